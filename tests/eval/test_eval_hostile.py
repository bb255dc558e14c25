"""10,000 hostile model outputs through the OlympiadBench judge and both extractors.

A seeded generator mixes what models and attackers write: lone surrogates, control and
bidirectional characters, NUL, unbalanced and spammed braces and boxes, numbers too large to
evaluate, runaway expansions and series, answer phrases, letters and hedges, random Unicode, and
outputs longer than the judged tail. Every output is judged in the scorer's workers under the
per-item limit, and extracted by both extractors in a limited worker (chunks of 500): nothing may
crash (an ``error``) or run past its limit (a ``timeout``), and every answer must be well formed.
"""

from __future__ import annotations

import random
from collections import Counter

import eval_worker_helpers as helpers
import pytest

from infuser.eval.limits import LimitedWorker
from infuser.eval.olympiad.gold import OlympiadGold
from infuser.eval.score import JudgeConfig, Scorer

COUNT = 10_000
FRAGMENTS = (
    "\ud800", "\udfff", "\udc80abc", "\x00", "\x1b[2J", "\u202e", "\u200b", "\ufeff", "\ufffd", "\U0001f600", "e\u0301",
    "\u2028", "\r\n", "\t", "\n", " ", "\\boxed{", "\\boxed ", "}", "{", "\\{", "\\}", "\\fbox{", "$", "$$", "\\(", "\\)",
    "\\[", "\\]", "So the final answer is ", "Answer: ", "the answer is ", "The correct option is ", "I'll go with ",
    "\\frac{", "}{", "\\sqrt{", "^{", "_{", "10^{10^{10}}", "9" * 400, "(a+b+c+d+e)^{40}", "\\prod_{k=1}^{10^8} k",
    "\\sum_{k=1}^{10^9} k^k", "\\left(", "\\right)", "(", ")", "[", "]", "\\cup", "\\pm", "\\infty", "\\%", "%",
    "^{\\circ}", "\\text{", "\\mathrm{", "A", "B", "c", "J", "K", " or ", ", ", "(C)", "**D**", "option ", "not ", "x",
    "=", "1", "0.5", "-3", "2^{100}", "1e999", "NaN", "\\\\", "\\", "&", "\\begin{pmatrix}", "\\end{pmatrix}",
)
GOLDS = (
    OlympiadGold(("12",)), OlympiadGold(("$\\frac{1}{2}$",)), OlympiadGold(("2,3",), is_multiple_answer=True),
    OlympiadGold(("$(1,6),(2,3)$",), "Tuple", True), OlympiadGold(("$[1,3)$",), "Interval"),
    OlympiadGold(("$y=2x+1$",), "Equation"), OlympiadGold(("$2^{n-1}$",), "Expression"),
    OlympiadGold(("19.6",), unit="m", tolerances=(0.1,)), OlympiadGold(("62.5%",)),
    OlympiadGold(("$1 \\pm \\sqrt{2}$",), is_multiple_answer=True),
)


def _random_unicode(rng: random.Random) -> str:
    ranges = ((0, 0x7F), (0x80, 0xFFFF), (0xD800, 0xDFFF), (0x10000, 0x10FFFF))
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 200)))


def hostile_outputs(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    outputs = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.75:  # fragments mixed
            text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 40)))
        elif kind < 0.85:
            text = _random_unicode(rng)
        elif kind < 0.97:  # one fragment spammed: deep nesting, box spam, a megabyte of digits
            text = rng.choice(FRAGMENTS) * rng.randint(100, 1500)
        else:  # longer than the judged tail, with something answer-like at the end
            text = "filler " * rng.randint(4000, 8000) + "".join(rng.choice(FRAGMENTS) for _ in range(10))
        outputs.append(text)
    return outputs


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    return hostile_outputs(COUNT)


def test_the_judge_never_crashes_or_overruns(outputs: list[str]) -> None:
    golds = [GOLDS[i % len(GOLDS)] for i in range(len(outputs))]
    with Scorer(JudgeConfig(item_timeout_s=5.0)) as scorer:
        scores = scorer.score_olympiad(outputs, golds)
        restarts = scorer.restarts
    reasons = Counter(s.reason for s in scores)
    print(f"\n{len(scores)} hostile outputs judged: {dict(reasons)}")
    assert len(scores) == COUNT
    assert reasons["error"] == 0 and reasons["timeout"] == 0 and restarts == 0
    for score in scores:
        assert score.missed == (score.extracted is None)
        assert not score.correct or score.extracted is not None


def test_the_extractors_never_crash_or_overrun(outputs: list[str]) -> None:
    counts = [2 + i % 9 for i in range(len(outputs))]
    chunk = 500
    with LimitedWorker(timeout_s=60.0) as worker:
        for start in range(0, len(outputs), chunk):
            outcome = worker.call(helpers.extract_all, outputs[start : start + chunk], counts[start : start + chunk])
            assert outcome.ok, outcome.error
            for (letter, _, answer, _), count in zip(outcome.value, counts[start : start + chunk]):
                assert letter is None or letter in "ABCDEFGHIJ"[:count]
                assert answer is None or 0 < len(answer) <= 2_000
