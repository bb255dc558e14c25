import torch
from transformers import AutoModelForCausalLM

from infuser.config import SamplingConfig
from infuser.model_config import ModelConfig
from infuser.models import load_causal_lm, load_tokenizer
from infuser.rollout.engine import _stop_ids, call_seed, completion_logps, generate
from infuser.rollout.rows import RolloutBatch

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
    batch = generate(model, tokenizer, PROMPTS, sampling, num_samples=3, stream=torch.Generator().manual_seed(0))
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


def test_shared_prefill_and_dropped_rows_change_nothing(tiny_model_dir):
    """Every other token id ends a row, so rows stop at different steps and the batch shrinks as it
    goes; groups of three samples share their prompt's prefill, and a chunk of four rows splits a
    group. Greedy decoding still equals transformers' per-row greedy decoding, and the recorded
    log-probs still equal a fresh scoring pass."""
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    stops = list(range(1, len(tokenizer), 2))
    greedy = SamplingConfig(do_sample=False, max_new_tokens=8, batch_size=4, stop_token_ids=stops)
    ours = generate(model, tokenizer, PROMPTS, greedy, num_samples=3)
    lengths = ours.completion_mask.sum(-1)
    assert len(set(lengths.tolist())) > 1
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for row in range(len(ours)):
        ids = tokenizer(PROMPTS[int(ours.prompt_index[row])], return_tensors="pt", add_special_tokens=False)
        out = reference.generate(**ids, do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stops + [tokenizer.eos_token_id])
        expected = out[0, ids["input_ids"].size(1):].tolist()
        assert ours.completion_ids[row, : int(lengths[row])].tolist() == expected[: int(lengths[row])]
        assert bool(ours.truncated[row]) == (int(lengths[row]) == 8 and expected[-1] not in stops)

    sampled = generate(model, tokenizer, PROMPTS, SamplingConfig(temperature=0.9, max_new_tokens=8, batch_size=4,
                       stop_token_ids=stops), num_samples=3, stream=torch.Generator().manual_seed(1))
    mask = sampled.completion_mask.bool()
    assert (sampled.completion_ids[~mask] == tokenizer.pad_token_id).all()
    with torch.no_grad():
        logps, _ = completion_logps(model, sampled, temperature=0.9)
    assert torch.allclose(logps[mask], sampled.sampling_logps[mask], atol=1e-4)
    assert (sampled.sampling_logps[~mask] == 0).all()


def test_shared_prompt_pass_equals_full_rows(tiny_model_dir):
    """Running each distinct prompt once under its samples' completions changes neither the
    log-probs nor the gradient (autograd flows through the shared KV cache)."""
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    batch = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=5), num_samples=3,
                     stream=torch.Generator().manual_seed(2)).select([5, 0, 3, 1, 4])
    results = []
    for share in (True, False):
        model.zero_grad()
        logps, entropy = completion_logps(model, batch, 0.8, with_entropy=True, entropy_grad=True, share_prompts=share)
        (logps * batch.completion_mask).sum().add(entropy.sum()).backward()
        results.append((logps.detach(), entropy.detach(), [p.grad.clone() for p in model.parameters()]))
    (shared_logps, shared_entropy, shared_grads), (full_logps, full_entropy, full_grads) = results
    torch.testing.assert_close(shared_logps, full_logps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared_entropy, full_entropy, atol=1e-5, rtol=1e-5)
    for shared, full in zip(shared_grads, full_grads):
        torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)


def test_stop_tokens_come_from_tokenizer_model_and_config(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    model.generation_config.eos_token_id = [7, tokenizer.eos_token_id]
    assert _stop_ids(model, tokenizer, SamplingConfig(stop_token_ids=[9])) == {7, 9, tokenizer.eos_token_id}


def test_a_rows_sample_depends_on_its_prompt_and_seed_only(tiny_model_dir):
    """Counter-based noise: a shard sampled with its prompt offset draws what the whole batch drew,
    whatever the chunking: what lets several processes split a batch of prompts between them."""
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    prompts = PROMPTS * 3
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6, batch_size=64)
    whole = generate(model, tokenizer, prompts, sampling, num_samples=4, stream=torch.Generator().manual_seed(3))
    shard = generate(model, tokenizer, prompts[2:5], SamplingConfig(temperature=1.0, max_new_tokens=6, batch_size=5),
                     num_samples=4, stream=torch.Generator().manual_seed(3), prompt_offset=2)
    assert shard.texts == whole.texts[8:20]
    other = generate(model, tokenizer, prompts, sampling, num_samples=4, stream=torch.Generator().manual_seed(4))
    assert other.texts != whole.texts


def test_gumbel_noise_samples_the_softmax():
    from infuser.rollout.engine import _gumbel_noise, row_seeds

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    seeds = row_seeds(7, torch.arange(20000), 1)
    tokens = (probs.log() + _gumbel_noise(seeds, step=3, vocab=4)).argmax(-1)
    frequencies = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(frequencies, probs, atol=0.015)  # 3 standard errors at n = 20000
    again = (probs.log() + _gumbel_noise(seeds, step=4, vocab=4)).argmax(-1)
    assert (again != tokens).float().mean() > 0.3  # steps draw independent noise


class _BusierNeighbour:
    """A :class:`~infuser.rollout.engine.Lockstep` beside another process that makes ``extra`` more
    forward calls than this one: it reports itself busy for that many of this process's idle turns."""

    def __init__(self, extra: int) -> None:
        self.extra, self.flags = extra, []

    def any(self, flag: bool) -> bool:
        self.flags.append(flag)
        if not flag and self.extra:
            self.extra -= 1
            return True
        return flag


def test_lockstep_keeps_forward_calls_in_step_and_changes_nothing_sampled(tiny_model_dir):
    """Under sharded parameters every forward gathers parameters from every process, so each
    process announces each call and, once done (or with no prompts at all), runs idle forwards for
    as long as another process still has real ones. What it samples is unchanged."""
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6, batch_size=4)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    alone = generate(model, tokenizer, PROMPTS, sampling, num_samples=3, stream=torch.Generator().manual_seed(5))
    real_calls, calls[:] = len(calls), []
    neighbour = _BusierNeighbour(extra=4)
    stepped = generate(model, tokenizer, PROMPTS, sampling, num_samples=3, stream=torch.Generator().manual_seed(5),
                       lockstep=neighbour)
    assert stepped.texts == alone.texts and torch.equal(stepped.sampling_logps, alone.sampling_logps)
    assert neighbour.flags == [True] * real_calls + [False] * 5  # four idle turns, then all are done
    assert len(calls) == real_calls + 4
    calls[:] = []
    stream = torch.Generator().manual_seed(5)
    empty = generate(model, tokenizer, [], sampling, num_samples=3, stream=stream, lockstep=_BusierNeighbour(2))
    assert len(empty) == 0 and len(calls) == 2
    drawn = torch.Generator().manual_seed(5)
    call_seed(drawn)  # a process without prompts still takes the call's draw
    assert torch.equal(stream.get_state(), drawn.get_state())


def test_rows_travel_without_padding_and_come_back_as_a_batch(tiny_model_dir):
    """What processes exchange under FSDP (every process differentiates a share of every candidate):
    rows stripped of padding, padded again on arrival, with the same tokens, masks and log-probs."""
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config)
    batch = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=6), num_samples=2,
                     stream=torch.Generator().manual_seed(1))
    rows = [3, 0, 2]
    again = RolloutBatch.of_rows(batch.select(rows).unpadded_rows(), tokenizer.pad_token_id, torch.device("cpu"))
    expected = batch.select(rows)
    for name in ("prompt_mask", "completion_mask", "truncated", "prompt_index"):
        assert torch.equal(getattr(again, name), getattr(expected, name)), name
    assert again.texts == expected.texts
    for field in ("prompt_ids", "completion_ids", "sampling_logps"):
        mask = (again.prompt_mask if field == "prompt_ids" else again.completion_mask).bool()
        assert torch.equal(getattr(again, field)[mask], getattr(expected, field)[mask]), field
    with torch.no_grad():
        assert torch.allclose(completion_logps(model, again)[0][again.completion_mask.bool()],
                              completion_logps(model, expected)[0][expected.completion_mask.bool()], atol=1e-5)
