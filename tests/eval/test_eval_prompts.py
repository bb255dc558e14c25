"""Prompt variants and chat templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_paths import OLYMPIAD_MINI, SUPERGPQA_MINI

from infuser.answers.choice import extract_choice
from infuser.data.chat import render_prompt
from infuser.eval.data import load_olympiadbench, load_supergpqa
from infuser.eval.prompts import (
    FIVE_SHOT_EXEMPLARS,
    OLYMPIAD_PROMPTS,
    SUPERGPQA_PROMPTS,
    olympiad_prompt,
    render_options,
    supergpqa_prompt,
)


@pytest.fixture(scope="module")
def olympiad_rows():
    return {r.id: r for r in load_olympiadbench(str(OLYMPIAD_MINI)).rows}


@pytest.fixture(scope="module")
def gpqa_rows():
    return load_supergpqa(str(SUPERGPQA_MINI)).rows


def test_official_prompt_elements(olympiad_rows) -> None:
    single = olympiad_prompt(olympiad_rows["9001"])
    assert "international mathematics competition" in single
    assert "The answer to this problem is a numerical value." in single
    assert '"So the final answer is \\boxed{answer}."' in single
    assert single.endswith(olympiad_rows["9001"].question)

    multiple = olympiad_prompt(olympiad_rows["9005"])
    assert "more than one answer, and each answer is a tuple" in multiple
    assert "\\boxed{all answers, separated by commas}" in multiple

    physics = olympiad_prompt(olympiad_rows["9016"])
    assert "international physics competition" in physics
    assert "measured in km/h; do not put the unit inside \\boxed{}" in physics

    with_context = olympiad_prompt(olympiad_rows["9011"])
    context, question = olympiad_rows["9011"].context, olympiad_rows["9011"].question
    assert with_context.index(context) < with_context.index(question)

    for row_id, phrase in (("9003", "an expression"), ("9006", "an interval"), ("9008", "an equation")):
        assert f"is {phrase}." in olympiad_prompt(olympiad_rows[row_id])


def test_plain_prompt(olympiad_rows) -> None:
    prompt = olympiad_prompt(olympiad_rows["9011"], "plain")
    assert prompt.startswith(olympiad_rows["9011"].context)
    assert prompt.endswith("Reason step by step, and put your final answer within \\boxed{}.")


def test_unknown_variants_are_rejected(olympiad_rows, gpqa_rows) -> None:
    with pytest.raises(ValueError, match="official"):
        olympiad_prompt(olympiad_rows["9001"], "cot")
    with pytest.raises(ValueError, match="zero_shot"):
        supergpqa_prompt(gpqa_rows[0], "ten_shot")


def test_supergpqa_variants(gpqa_rows) -> None:
    row = gpqa_rows[0]  # ten options
    zero = supergpqa_prompt(row, "zero_shot")
    assert "'Answer: $LETTER'" in zero and "A, B, C, D, E, F, G, H, I or J" in zero
    assert render_options(row.options) in zero and "\nA) Oxygen\nB) Nitrogen\n" in zero
    boxed = supergpqa_prompt(gpqa_rows[1], "boxed")  # four options
    assert "\\boxed{}" in boxed and "(A, B, C or D)" in boxed
    five = supergpqa_prompt(row, "five_shot")
    assert five.count("\nAnswer: ") == 5 and five.endswith(render_options(row.options))
    assert set(SUPERGPQA_PROMPTS) == {"zero_shot", "five_shot", "boxed"}
    assert set(OLYMPIAD_PROMPTS) == {"official", "plain"}


def test_five_shot_exemplars_are_well_formed() -> None:
    for question, options, reasoning, letter in FIVE_SHOT_EXEMPLARS:
        assert 4 <= len(options) <= 10 and len(set(options)) == len(options)
        solution = f"{reasoning}\nAnswer: {letter}"
        assert extract_choice(solution, options).answer == letter
        assert options["ABCDEFGHIJ".index(letter)] in reasoning  # the answer is argued for
    assert len({letter for *_, letter in FIVE_SHOT_EXEMPLARS}) >= 4  # not all the same letter


class _ChatTokenizer:
    chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"

    def apply_chat_template(self, messages, tokenize: bool, add_generation_prompt: bool) -> str:
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class _BaseTokenizer:
    chat_template = None


def test_chat_template_applied_only_when_asked_and_available() -> None:
    assert render_prompt("Q", _ChatTokenizer()) == "<user>Q<assistant>"
    assert render_prompt("Q", _ChatTokenizer(), system_prompt="Be brief.") == "<system>Be brief.<user>Q<assistant>"
    assert render_prompt("Q", _ChatTokenizer(), use_chat_template=False) == "Q"
    assert render_prompt("Q", _BaseTokenizer()) == "Q"
    assert render_prompt("Q", None) == "Q"


def test_prompt_builder_handles_every_real_row(real_olympiad_file: Path) -> None:
    rows = load_olympiadbench(str(real_olympiad_file)).rows
    assert len(rows) == 675
    for row in rows:
        for variant in OLYMPIAD_PROMPTS:
            prompt = olympiad_prompt(row, variant)
            assert row.question.strip() in prompt
            assert "\\boxed{" in prompt
        official = olympiad_prompt(row, "official")
        assert ("more than one answer" in official) is row.is_multiple_answer
        assert ("measured in" in official) is bool(row.unit)
