"""Chat templates in ``infuser fit`` (``model.chat_template``): prompts rendered through the
tokenizer's template, sampling that stops at its end-of-turn token, and an update whose
log-probabilities and loss mask cover exactly the sampled completion after the rendered prompt.

The model is the tiny test base given ChatML's two special tokens and template, as an instruct
model's tokenizer carries them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from infuser.config import ConfigurationError, RoleConfig, SamplingConfig
from infuser.data.chat import ChatFormat, end_of_turn_id
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.model_config import ModelConfig, base_differences
from infuser.roles.solver import Solver

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def chat_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base with ChatML's tokens (embeddings grown to hold them) and template."""
    directory = tmp_path_factory.mktemp("chat-model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_auto_renders_through_the_template_and_finds_its_end_of_turn(chat_model_dir, tiny_model_dir):
    chat = AutoTokenizer.from_pretrained(chat_model_dir)
    rendered = ChatFormat.of(chat, "auto", "Be brief.", "solver.model.chat_template")
    assert rendered.render("Q") == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                                    "<|im_start|>assistant\n")
    assert rendered.end_of_turn == end_of_turn_id(chat) == chat.convert_tokens_to_ids("<|im_end|>")
    assert rendered.sampling(SamplingConfig(stop_token_ids=[5])).stop_token_ids == [5, rendered.end_of_turn]
    off = ChatFormat.of(chat, False, None, "solver.model.chat_template")
    assert off.render("Q") == "Q" and off.end_id == chat.eos_token_id and off.sampling(SamplingConfig()).stop_token_ids == []
    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert ChatFormat.of(base, "auto", "Be brief.", "k").render("Q") == "Be brief.\n\nQ"  # no template: raw text


def test_true_without_a_template_names_the_key(tiny_model_dir):
    with pytest.raises(ConfigurationError, match=r"^generator\.model\.chat_template: true, but the tokenizer of .* "
                                                 r"has no chat template; use auto"):
        ChatFormat.of(AutoTokenizer.from_pretrained(tiny_model_dir), True, None, "generator.model.chat_template")


def test_roles_sharing_a_base_may_format_their_prompts_differently():
    assert base_differences(ModelConfig(chat_template="auto", system_prompt="S"), ModelConfig()) == []


def _two_token_head(model: nn.Module, tokens: list[int]) -> None:
    """Make the model write only ``tokens``, each equally likely at every step (a head with a bias)."""
    head = nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[tokens] = 0.0
    model.lm_head = head


def test_the_solver_samples_the_rendered_prompt_stops_at_end_of_turn_and_trains_on_the_completion_only(
        chat_model_dir):
    config = RoleConfig(model=ModelConfig(name_or_path=str(chat_model_dir), chat_template="auto"),
                        sampling=SamplingConfig(max_new_tokens=12))
    solver = Solver(config, PromptTemplates())
    tokenizer, end = solver.tokenizer, solver.chat.end_of_turn
    word = tokenizer("A", add_special_tokens=False)["input_ids"][0]
    _two_token_head(solver.model, [word, end])
    question = MCQuestion(question="2 plus 2?", options=("3", "4", "5", "6"), answer_index=1)
    answers = solver.answer([question], num_samples=8, stream=torch.Generator().manual_seed(0))
    batch = answers.rollouts.batch

    rendered = solver.chat.render(PromptTemplates().for_solver(question))
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")
    expected_prompt = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    for row in range(len(batch.texts)):
        assert batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist() == expected_prompt
        length = int(batch.completion_mask[row].sum())
        completion = batch.completion_ids[row, :length].tolist()
        assert end not in completion[:-1]  # sampling stopped at the first end-of-turn
        assert completion[-1] == end or (bool(batch.truncated[row]) and length == 12)
    stopped = [row for row in range(len(batch.texts)) if not bool(batch.truncated[row])]
    assert len(stopped) >= 6 and len({int(batch.completion_mask[r].sum()) for r in stopped}) > 1
    assert all("<|im_end|>" not in text for text in batch.texts)

    mask = solver.loss_mask(batch)
    assert torch.equal(mask, batch.completion_mask)  # the loss covers completion tokens, end-of-turn included
    with torch.no_grad():
        logps = solver.logps_step(batch)
    assert logps.shape == batch.completion_ids.shape
    # The update scores exactly the tokens that were sampled after exactly the rendered prompt.
    torch.testing.assert_close(logps * mask, batch.sampling_logps * mask, atol=1e-4, rtol=0)
    # Exact evaluation ends a canonical answer with end-of-turn too: P("A", end-of-turn) = 1/2 * 1/2.
    assert solver.exact_accuracy([question], ["A"], temperature=1.0) == pytest.approx(0.25, abs=1e-6)


def test_the_generators_drafts_follow_the_rendered_document_prompt_and_end_their_turn(chat_model_dir):
    from infuser.data.documents import Document
    from infuser.roles.generator import Generator

    config = RoleConfig(model=ModelConfig(name_or_path=str(chat_model_dir), chat_template=True,
                                          system_prompt="Write exam questions."))
    generator = Generator(config, PromptTemplates())
    document = Document(id="d0", text="2 plus 2 is 4.")
    draft = "Question: 2 plus 2?\nA) 3\nB) 4\nC) 5\nD) 6\nAnswer: B"
    drafts = generator.scripted([document], 1, [draft], random.Random(0))
    batch = drafts.rollouts.batch
    rendered = ("<|im_start|>system\nWrite exam questions.<|im_end|>\n<|im_start|>user\n"
                f"{PromptTemplates().for_generator(document.text)}<|im_end|>\n<|im_start|>assistant\n")
    assert batch.prompt_ids[0].tolist() == generator.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert batch.completion_ids[0, -1].item() == generator.chat.end_of_turn
