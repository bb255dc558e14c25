import torch
from transformers import AutoModelForCausalLM

from infuser.models import ModelConfig, load_causal_lm, load_tokenizer
from infuser.rollout.engine import SamplingConfig, completion_logps, generate

PROMPTS = ["Question: What is the sum of 2 and 3?\nA) 4\nB) 5\nC) 6\nD) 7\nAnswer:", "Document: 1 plus 1 is 2.\n"]


def test_greedy_matches_transformers_generate(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    ours = generate(model, tokenizer, PROMPTS, SamplingConfig(do_sample=False, max_new_tokens=6))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for row, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = reference.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
        expected = out[0, ids["input_ids"].size(1):]
        length = int(ours.completion_mask[row].sum())
        assert ours.completion_ids[row, :length].tolist() == expected[:length].tolist()


def test_batch_layout_and_logps(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    sampling = SamplingConfig(temperature=0.9, max_new_tokens=5, batch_size=3)
    batch = generate(model, tokenizer, PROMPTS, sampling, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert len(batch) == 6 and batch.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.prompt_mask[:, -1].all()  # left padded
    # the sampler's log-probs equal a fresh scoring pass (ratio 1 for an unchanged model)
    with torch.no_grad():
        logps, _ = completion_logps(model, batch, temperature=0.9)
    mask = batch.completion_mask.bool()
    assert torch.allclose(logps[mask], batch.sampling_logps[mask], atol=1e-4)
    # rows that did not stop are flagged truncated and fill the whole budget
    assert (batch.completion_mask[batch.truncated].sum(-1) == batch.completion_ids.size(1)).all()
    sub = batch.select([4, 1])
    assert sub.texts == [batch.texts[4], batch.texts[1]]
