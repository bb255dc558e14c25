import random

import pytest

from infuser.data.prompts import PromptTemplates
from infuser.data.questions import InvalidQuestion, MCQuestion, parse_question

GOOD = "Question: What is the product of 6 and 7?\nA) 41\nB) 42\nC) 43\nD) 44\nAnswer: B"


def test_parses_valid_question():
    q = parse_question(GOOD)
    assert isinstance(q, MCQuestion)
    assert q.question == "What is the product of 6 and 7?"
    assert q.options == ("41", "42", "43", "44")
    assert q.answer_letter == "B"


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("hello", "no_question_line"),
    ("Question: x?\nA) 1\nB) 2\nC) 3\nAnswer: A", "too_few_options"),
    ("Question: x?\nA) 1\nB) 2\nC) 2\nD) 4\nAnswer: A", "duplicate_options"),
    ("Question: x?\nA) 1\nC) 2\nB) 3\nD) 4\nAnswer: A", "option_letters_out_of_order"),
    ("Question: x?\nA) 1\nB) 2\nC) 3\nD) 4", "no_answer"),
    ("Question: x?\nA) 1\nB) 2\nC) 3\nD) 4\nAnswer: F", "answer_not_an_option"),
    ("Question: x?\nA) 1\nB) 2\nC) 3\nD) 4\nAnswer: A\nmore", "unexpected_line"),
    ("Question: " + "x" * 5000, "too_long"),
])
def test_invalid_outputs_have_reasons(text, reason):
    result = parse_question(text)
    assert isinstance(result, InvalidQuestion)
    assert result.reason == reason


def test_shuffle_keeps_the_golden_option():
    q = parse_question(GOOD)
    for seed in range(20):
        s = q.shuffled(random.Random(seed))
        assert s.options[s.answer_index] == "42"
        assert sorted(s.options) == sorted(q.options)


@pytest.mark.parametrize("text, correct", [
    (" 6 times 7 is 42, so \\boxed{B}", True),
    (" 6 times 7 is 42, so \\boxed{42}", True),  # the option's text counts as choosing it
    ("\\boxed{A} then \\boxed{ C }", False),
    ("\\boxed{41}", False),
    ("no answer at all", False),
    ("\\boxed{", False),
])
def test_grading_by_letter_or_option_text(text, correct):
    assert parse_question(GOOD).is_answered_by(text) is correct


def test_solver_prompt_renders_options():
    q = parse_question(GOOD)
    prompt = PromptTemplates().for_solver(q)
    assert "A) 41\nB) 42" in prompt and prompt.endswith("Answer:")


def test_bad_template_names_the_key():
    with pytest.raises(ValueError, match="prompts.solver"):
        PromptTemplates(solver="{nope}")
