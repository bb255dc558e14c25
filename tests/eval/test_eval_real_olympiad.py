"""Checks against the 675 real OlympiadBench rows in ``../shared/data/olympiadbench``.

Skipped when the folder is absent (the project never needs it). Every gold answer, written as a
model would in the official format, must be judged correct; a clearly wrong answer for every row
must be judged wrong. The judging of all 675 gold answers is also the speed check reported in
``docs/eval.md``: the test asserts correctness and that no item hit the time limit, and prints the
wall time (``pytest -s``), but never asserts on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infuser.eval.data import OlympiadRow, load_olympiadbench
from infuser.eval.olympiad.cleanup import clean_answer
from infuser.eval.olympiad.structure import split_top_level
from infuser.eval.score import Scorer


@pytest.fixture(scope="module")
def rows(real_olympiad_file: Path) -> list[OlympiadRow]:
    loaded = load_olympiadbench(str(real_olympiad_file))
    assert len(loaded.rows) == 675
    return loaded.rows


def _bare(answer: str) -> str:
    return answer.replace("$", "").strip()


def official_single_box(row: OlympiadRow) -> str:
    """All answers in one box, as the official prompt asks."""
    return f"Let us work it out.\n...\nSo the final answer is $\\boxed{{{_bare(', '.join(row.final_answer))}}}$."


def official_box_per_answer(row: OlympiadRow) -> str:
    """One box per answer on the final line (a common model habit for several answers)."""
    parts = split_top_level(_bare(", ".join(row.final_answer))) if row.is_multiple_answer else [_bare(row.final_answer[0])]
    boxes = ", ".join(f"\\boxed{{{p}}}" for p in parts if p)
    return f"Reasoning first.\nSo the final answer is {boxes}."


def test_every_gold_answer_is_judged_correct(rows: list[OlympiadRow], scorer: Scorer) -> None:
    golds = [r.gold for r in rows]
    scorer.score_olympiad(["\\boxed{1}"], golds[:1])  # start the worker outside the timing
    for style in (official_single_box, official_box_per_answer):
        outputs = [style(r) for r in rows]
        start = time.monotonic()
        scores = scorer.score_olympiad(outputs, golds)
        elapsed = time.monotonic() - start
        print(f"\njudged {len(rows)} gold answers ({style.__name__}) in {elapsed:.2f} s")
        wrong = [(r.id, s) for r, s in zip(rows, scores) if not s.correct]
        assert not wrong, wrong[:5]
        assert not [s for s in scores if s.reason in ("timeout", "error")]


def clearly_wrong(row: OlympiadRow) -> list[str]:
    """Wrong answers for a row: a far-off number, and a near miss of the gold (one answer dropped
    when there are several, otherwise the gold plus one)."""
    gold = clean_answer(", ".join(row.final_answer), row.unit).text
    items = [i for i in split_top_level(gold) if i]
    if len(items) > 1:
        near = ", ".join(items[:-1])
    elif "=" in gold:
        lhs, _, rhs = gold.rpartition("=")
        near = f"{lhs}={rhs}+1"
    elif gold.startswith(("(", "[")):
        near = gold[0] + "-987654," + gold[1:]  # a tuple or interval with an extra, wrong entry
    else:
        near = f"{gold}+1"
    return ["-987654.5", near]


def test_clearly_wrong_answers_are_judged_wrong(rows: list[OlympiadRow], scorer: Scorer) -> None:
    golds, outputs, labels = [], [], []
    for row in rows:
        for wrong in clearly_wrong(row):
            golds.append(row.gold)
            outputs.append(f"Some work.\nSo the final answer is $\\boxed{{{wrong}}}$.")
            labels.append((row.id, wrong))
    scores = scorer.score_olympiad(outputs, golds)
    accepted = [(label, s.reason) for label, s in zip(labels, scores) if s.correct]
    assert not accepted, accepted[:5]
    assert not [s for s in scores if s.reason == "error"]


def test_unanswered_outputs_are_misses(rows: list[OlympiadRow], scorer: Scorer) -> None:
    sample = rows[:25]
    scores = scorer.score_olympiad(["I am not sure how to finish this."] * len(sample), [r.gold for r in sample])
    assert all(s.missed and not s.correct for s in scores)
