"""Property tests: every parser and extractor of model output and of input files, on any input,
returns within its time limit and raises nothing but its documented error.

Inputs are the shapes issue 8 names (garbage, truncation, a megabyte of text, deep nesting, odd
Unicode including lone surrogates, JSON with duplicate keys or huge numbers) mixed by hypothesis.
Each call runs in a :class:`~infuser.eval.limits.LimitedWorker` child: a hang shows up as a
``timeout`` outcome and an unexpected exception as an ``error`` outcome naming its type, so the
time limit is the worker's and no test measures wall time itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infuser.answers.choice import extract_choice
from infuser.answers.extraction import Extraction
from infuser.data.jsonl import load_json_line
from infuser.data.question_sets import JsonlQuestions
from infuser.data.questions import InvalidQuestion, MCQuestion, parse_question
from infuser.eval.data import supergpqa_row
from infuser.eval.limits import LimitedWorker, Outcome
from infuser.eval.olympiad.extract import extract_olympiad_answer
from infuser.eval.olympiad.gold import OlympiadGold
from infuser.eval.score import JudgeConfig, Scorer
from infuser.tasks.code_problems import CodeProblem, JsonlCodeProblems

FRAGMENTS = st.sampled_from([
    "Question:", "Question: What is 2+2?", "\n", "A)", "A) 4", "B) 5", "J) 9", "K) 1", "Answer:", "Answer: (C)",
    "\\boxed{", "\\fbox{", "}", "{", "[", "]", '"', "\\", "the answer is", "Answer: B", "option", "\ud800", "\udfff",
    "\u2028", "\u202e", "\u200b", "\x00", "\x1b[2J", "\ufeff", "\ufffd", "\U0001f600", "e\u0301", "1e999999",
    "9" * 400, "NaN", "-Infinity", '{"a": 1, "a": 2}', '{"question": "x", "question": "y"}', "\r\n", "\t",
])
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=80).map("".join),
    # a fragment repeated up to a megabyte: runaway output, deep nesting, box spam
    st.tuples(FRAGMENTS, st.integers(min_value=1, max_value=400_000)).map(lambda p: (p[0] * p[1])[:1_100_000]),
)
ELEVEN_OPTIONS = "Question: x?\n" + "\n".join(f"{c}) {i}" for i, c in enumerate("ABCDEFGHIJ")) + "\nJ) 10\nAnswer: A"
HUGE_NUMBER = b'{"question": ' + b"9" * 5000 + b"}"  # past Python's 4300-digit limit: a ValueError in json
DEEP = b"[" * 100_000
LINES = st.one_of(st.binary(max_size=300), TEXTS.map(lambda s: s.encode("utf-8", "surrogatepass")))

QUESTION = MCQuestion(question="What is 2+2?", options=("3", "4", "5", "6"), answer_index=1)
OPTIONS = ("3", "4", "5", "6")
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def worker() -> Iterator[LimitedWorker]:
    with LimitedWorker(timeout_s=10.0, preload=("infuser.data.question_sets", "infuser.answers.choice", "infuser.eval.olympiad.extract")) as limited:
        yield limited


def _returned(outcome: Outcome, documented: tuple[str, ...] = ()) -> object:
    """The value of a call that returned in time, or ``None`` if it raised a documented error."""
    if outcome.status == "error" and outcome.error and outcome.error.split(":")[0] in documented:
        return None
    assert outcome.ok, f"{outcome.status}: {outcome.error}"
    return outcome.value


@PROPERTY
@given(TEXTS)
@example(ELEVEN_OPTIONS)
def test_parse_question_always_returns_a_question_or_a_reason(worker: LimitedWorker, text: str) -> None:
    parsed = _returned(worker.call(parse_question, text))
    assert isinstance(parsed, (MCQuestion, InvalidQuestion))
    if isinstance(parsed, InvalidQuestion):
        assert parsed.reason
    else:
        assert 4 <= len(parsed.options) <= 10 and 0 <= parsed.answer_index < len(parsed.options)


@PROPERTY
@given(TEXTS)
def test_training_reward_grading_never_raises(worker: LimitedWorker, text: str) -> None:
    """``MCQuestion.is_answered_by`` grades every Solver rollout in-process, without the judge's
    worker: the worker here only checks that it returns, promptly, a bool."""
    assert isinstance(_returned(worker.call(QUESTION.is_answered_by, text)), bool)


EXTRACTORS: dict[str, Callable[[str], tuple]] = {
    "extract_choice": lambda text: (extract_choice, text, OPTIONS),
    "extract_olympiad_answer": lambda text: (extract_olympiad_answer, text),
}


@pytest.mark.parametrize("name", EXTRACTORS)
@PROPERTY
@given(text=TEXTS)
def test_extractors_return_an_extraction(worker: LimitedWorker, name: str, text: str) -> None:
    extraction = _returned(worker.call(*EXTRACTORS[name](text)))
    assert isinstance(extraction, Extraction)
    assert extraction.answer is None or len(extraction.answer) <= len(text)


@PROPERTY
@given(LINES)
@example(HUGE_NUMBER)
@example(DEEP)
def test_json_lines_raise_only_their_documented_errors(worker: LimitedWorker, line: bytes) -> None:
    _returned(worker.call(load_json_line, line), documented=("UnicodeDecodeError", "JSONLineError"))


@PROPERTY
@given(st.one_of(LINES, st.fixed_dictionaries({
    "question": st.one_of(TEXTS, st.integers(), st.none()),
    "options": st.one_of(st.lists(TEXTS, max_size=12), TEXTS),
    "answer_letter": st.one_of(st.sampled_from("ABCDEFGHIJKz"), TEXTS),
}).map(lambda row: json.dumps(row).encode())))
@example(HUGE_NUMBER)
@example(DEEP)
def test_target_set_rows_raise_only_question_set_errors(worker: LimitedWorker, line: bytes) -> None:
    row = _returned(worker.call(JsonlQuestions("target.jsonl").parse_row, line, 2), documented=("QuestionSetError",))
    assert row is None or isinstance(row, MCQuestion)


@PROPERTY
@given(st.one_of(LINES, st.fixed_dictionaries({
    "statement": st.one_of(TEXTS, st.integers(), st.none()),
    "signature": st.one_of(TEXTS, st.just("def f(x):")),
    "tests": st.one_of(st.lists(TEXTS, max_size=4), TEXTS),
    "reference": st.one_of(TEXTS, st.none()),
}).map(lambda row: json.dumps(row).encode())))
@example(HUGE_NUMBER)
@example(DEEP)
def test_code_problem_rows_raise_only_question_set_errors(worker: LimitedWorker, line: bytes) -> None:
    row = _returned(worker.call(JsonlCodeProblems("problems.jsonl").parse_row, line, 2),
                    documented=("QuestionSetError",))
    assert row is None or isinstance(row, CodeProblem)


@pytest.fixture(scope="module")
def scorer() -> Iterator[Scorer]:
    with Scorer(JudgeConfig(item_timeout_s=10.0)) as shared:
        yield shared


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(TEXTS)
def test_judge_entry_points_score_any_output(scorer: Scorer, output: str) -> None:
    """The production judge (extraction and judging under the per-item limit) never raises: a
    timeout or a failure in a worker is an item judged wrong, with that reason."""
    row = supergpqa_row({"uuid": "q", "question": "2+2?", "options": list(OPTIONS), "answer_letter": "B"})
    for scores in (scorer.score_choice([output], [row]), scorer.score_olympiad([output], [OlympiadGold(("4",))])):
        assert len(scores) == 1 and isinstance(scores[0].correct, bool) and scores[0].reason
