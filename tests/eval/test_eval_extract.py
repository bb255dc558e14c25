"""Answer extraction: every path, adversarial outputs, and properties (hypothesis)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infuser.answers.boxes import find_boxed, match_braces, unbox
from infuser.answers.choice import extract_choice
from infuser.answers.extraction import MAX_OUTPUT_CHARS, Extraction
from infuser.eval.limits import LimitedWorker
from infuser.eval.olympiad.extract import extract_olympiad_answer

OPTIONS = ("red", "green", "blue", "yellow", "cyan", "magenta", "black", "white", "grey", "brown")


# -- boxes ---------------------------------------------------------------------------------------


def test_find_boxed_matches_nested_and_escaped_braces() -> None:
    text = r"x \boxed{\frac{1}{2}} y \boxed{\{1, 2\}} z \fbox{3} \boxed 7 and \boxed{\boxed{9}}"
    assert find_boxed(text) == [r"\frac{1}{2}", r"\{1, 2\}", "3", "7", r"\boxed{9}"]
    assert unbox(r"\boxed{\boxed{9}}") == "9"


def test_find_boxed_skips_unbalanced_boxes() -> None:
    assert find_boxed(r"\boxed{1 + \boxed{2}") == ["2"]
    assert find_boxed(r"\boxed{oops") == []
    assert find_boxed(r"\boxedfoo{1}") == []


def test_match_braces_is_linear_and_ignores_escapes() -> None:
    assert match_braces(r"{a\{b}c}") == {0: 5}
    text = "{" * 200_000
    start = time.monotonic()
    assert match_braces(text) == {}
    assert time.monotonic() - start < 5


# -- OlympiadBench ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "answer", "method"),
    [
        ("Work.\nSo the final answer is $\\boxed{12}$.", "12", "final_answer_line:boxed"),
        ("So the final answer is \\boxed{2}, \\boxed{3}.", "2, 3", "final_answer_line:boxed"),
        ("Scratch \\boxed{5}\nSo the final answer is $\\boxed{7}$", "7", "final_answer_line:boxed"),
        ("So the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}", "final_answer_line:text"),
        ("first \\boxed{1}\nthen\nfinally \\boxed{2} and \\boxed{4}", "2, 4", "boxed:last_line"),
        ("The answer is $x = 3$.", "x = 3", "answer_is:text"),
        ("Answer: 42", "42", "answer_is:text"),
        ("So the final answer is\n$$\\boxed{8}$$", "8", "boxed:last_line"),
        ("So the final answer is $\\boxed{\\boxed{6}}$", "6", "final_answer_line:boxed"),
        # no answer phrase, no box: the official fallback, the last line's inline math (issue 28)
        ("We find the area.\nIt is $12$ square units.", "12", "last_line:inline_math"),
        ("Let $x$ be the side.\nThen $x = 3$ and $y = 4$.\n\n", "x = 3, y = 4", "last_line:inline_math"),
        ("The ratio is\n$$\\frac{1}{2}$$", "\\frac{1}{2}", "last_line:inline_math"),  # display math, read whole
        ("Thus $a=1$ and $b", "a=1", "last_line:inline_math"),  # an unpaired $ opens nothing
        ("The answer is $7$.\nHere $x$ is the speed.", "7", "answer_is:text"),  # a phrase comes first
        ("\\boxed{3}\nwhere $x$ is the speed", "3", "boxed:last_line"),  # and so does a box
    ],
)
def test_olympiad_extraction_paths(output: str, answer: str, method: str) -> None:
    result = extract_olympiad_answer(output)
    assert (result.answer, result.method) == (answer, method)


@pytest.mark.parametrize(
    "output",
    ["", "I could not solve it.", "So the final answer is", "\\boxed{}", "}}}{{{",
     "The area is $12$.\nNo formula on the last line.", "A lone $ sign", "$$ $ $"],
)
def test_olympiad_no_answer_is_a_miss(output: str) -> None:
    assert extract_olympiad_answer(output) == Extraction(None, "none")


@pytest.mark.parametrize(
    "output",
    [
        "\\boxed{",
        "So the final answer is \\boxed{5",  # cut off mid-answer
        "So the final answer is \\boxed{\\frac{1}{2}",
        "Scratch: \\boxed{3}\nSo the final answer is \\boxed{5",  # an earlier box is not the answer
        "\\boxed{3}\nthen finally \\boxed{4",
        "The answer is \\boxed{7",
    ],
)
def test_an_unclosed_box_is_a_miss_never_its_raw_text(output: str) -> None:
    assert extract_olympiad_answer(output) == Extraction(None, "unclosed_box")


def test_an_unclosed_box_before_the_answer_does_not_hide_it() -> None:
    assert extract_olympiad_answer("\\boxed{oops\nSo the final answer is \\boxed{7}").answer == "7"


def test_the_answer_after_hundreds_of_scratch_boxes_is_read() -> None:
    scratch = " ".join(f"\\boxed{{{i}}}" for i in range(300))
    assert extract_olympiad_answer(f"{scratch}\nSo the final answer is \\boxed{{42}}").answer == "42"
    assert extract_olympiad_answer(f"{scratch}\nfinally \\boxed{{42}}").answer == "42"
    assert find_boxed(scratch + " \\boxed{42}")[-1] == "42"


def test_olympiad_megabyte_output_reads_the_tail() -> None:
    output = ("blah " * 210_000) + "\nSo the final answer is $\\boxed{17}$."
    assert len(output) > 1_000_000
    start = time.monotonic()
    result = extract_olympiad_answer(output)
    assert time.monotonic() - start < 5
    assert result.answer == "17" and result.truncated


def test_olympiad_enormous_numbers_are_extracted_verbatim() -> None:
    big = "9" * 1500
    assert extract_olympiad_answer(f"So the final answer is \\boxed{{{big}}}").answer == big
    huge = "10^{10^{10^{10}}}"
    assert extract_olympiad_answer(f"So the final answer is $\\boxed{{{huge}}}$").answer == huge


def test_olympiad_overlong_answer_is_rejected() -> None:
    long_answer = "x" * (MAX_OUTPUT_CHARS // 2)
    assert extract_olympiad_answer(f"So the final answer is \\boxed{{{long_answer}}}").answer is None


def test_non_string_input_is_a_miss() -> None:
    assert extract_olympiad_answer(None).answer is None  # type: ignore[arg-type]
    assert extract_choice(None, OPTIONS).answer is None  # type: ignore[arg-type]


# -- SuperGPQA letters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        "",
        "No idea.",
        "The answer is Apple pie.",  # a word, not a letter
        "The answer is, I think, unclear.",  # the pronoun
        "Answer: K",  # no option K
        "\\boxed{",
    ],
)
def test_choice_misses(output: str) -> None:
    assert extract_choice(output, OPTIONS).answer is None


def test_choice_only_accepts_existing_letters() -> None:
    four = OPTIONS[:4]
    assert extract_choice("Answer: E", four).answer is None
    assert extract_choice("Answer: D", four).answer == "D"


def test_choice_megabyte_output() -> None:
    output = "x" * 1_000_000 + "\nAnswer: B"
    start = time.monotonic()
    assert extract_choice(output, OPTIONS).answer == "B"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "output",
    [
        "So the final answer is \\boxed{" + " " * 30_000 + "}",
        "The answer is " + " \t" * 15_000 + "x",
        "Answer:" * 5_000,
        "\\boxed{" * 6_000 + "}" * 3_000,
        "(" * 30_000,
        "$" * 30_000,
        "**" * 15_000 + "A",
    ],
)
def test_pathological_outputs_stay_linear(output: str) -> None:
    start = time.monotonic()
    extract_olympiad_answer(output)
    extract_choice(output, OPTIONS)
    assert time.monotonic() - start < 5


# -- properties ---------------------------------------------------------------------------------

LATEXISH = st.lists(
    st.sampled_from(list("ABCDJ0123456789xyn+-*/^_=,.:;()[]{}$\\ \n") + [
        "\\boxed{", "\\frac", "So the final answer is ", "Answer: ", "the answer is ",
        "\\text{", "**", "\\left(", "\\right)", "10^{10^{", "\\pm", "\\cup", "\\infty", "\\fbox",
    ]),
    max_size=80,
).map("".join)

ANY_TEXT = st.one_of(LATEXISH, st.text(max_size=300))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_olympiad_extraction_never_raises(text: str) -> None:
    result = extract_olympiad_answer(text)
    assert isinstance(result, Extraction)
    assert result.answer is None or (0 < len(result.answer) <= len(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT, st.integers(min_value=2, max_value=10))
def test_choice_extraction_never_raises(text: str, n_options: int) -> None:
    result = extract_choice(text, OPTIONS[:n_options])
    assert isinstance(result, Extraction)
    assert result.answer is None or result.answer in "ABCDEFGHIJ"[:n_options]


@pytest.fixture(scope="module")
def limited() -> LimitedWorker:
    with LimitedWorker(timeout_s=2.0, preload=("infuser.answers.choice", "infuser.eval.olympiad.extract")) as worker:
        yield worker


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(LATEXISH, st.text(max_size=2000)).map(lambda s: s * 50))
@example(":::::A" * 50)  # once 4 s of regex backtracking in the last line's letter list
def test_extraction_returns_within_the_limit(limited: LimitedWorker, text: str) -> None:
    for fn, args in ((extract_olympiad_answer, (text,)), (extract_choice, (text, OPTIONS))):
        outcome = limited.call(fn, *args)
        assert outcome.status == "ok", outcome.error
