"""Differential comparison of infuser's OlympiadBench judge with the official rules.

Answers are generated from gold answers (as written, respaced, reordered, rounded, scaled by 100,
nudged inside and outside the tolerance, clearly wrong...) and judged by both infuser's union judge
and :class:`official_reference.OfficialReference`. Every disagreement must be one of the deviations
docs/eval.md names (:data:`DEVIATIONS`); anything else is a bug in one of the two.

:func:`compare_outputs` states the same answers in whole outputs (:data:`OUTPUT_FORMS`: the
official closing sentence, a last box, the last line's inline math), so that extraction is
compared too: infuser extracts and judges, the reference follows the official pipeline.

Used by ``test_eval_differential.py`` and ``benchmarks/judge_differential.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from official_reference import OfficialReference, official_answer

from infuser.eval.data import OlympiadRow
from infuser.eval.olympiad.cleanup import clean_answer
from infuser.eval.olympiad.extract import extract_olympiad_answer
from infuser.eval.olympiad.gold import Verdict
from infuser.eval.olympiad.judge import judge_olympiad
from infuser.eval.olympiad.numbers import AnswerParseError
from infuser.eval.olympiad.structure import split_top_level
from infuser.eval.olympiad.symbolic import numeric_value, to_sympy


@dataclass(frozen=True)
class Case:
    """One answer to one row."""

    row: OlympiadRow
    variant: str
    answer: str

    @property
    def official_gold(self) -> str:
        return self.row.final_answer[0]

    @property
    def official_tolerance(self) -> float | list[float]:
        """The tolerance the official evaluation script passes: none for tuples, else ``error``."""
        error = self.row.error
        if "Tuple" in self.row.answer_type or not error:
            return 1e-8
        if "," in error:
            return [float(p) if p else 1e-8 for p in error.split(",")]
        return float(error)


def _value(text: str) -> float | None:
    try:
        value = numeric_value(to_sympy(text))
    except AnswerParseError:
        return None
    return value.real if value is not None and value.imag == 0 else None


def _number(x: float) -> str:
    return repr(x) if x == 0 or abs(x) >= 1e-4 else f"{x:.12g}"


def variants(row: OlympiadRow) -> list[tuple[str, str]]:
    """Answers a model could give for ``row``, each named by how it was made."""
    bare = row.final_answer[0].replace("$", "").strip()
    made = [("as_written", bare), ("no_spaces", bare.replace(" ", "")), ("far_off", "-987654.5")]
    items = [i for i in split_top_level(clean_answer(bare, row.unit).text) if i]
    if len(items) > 1:
        made += [("reversed", ", ".join(reversed(items))), ("one_dropped", ", ".join(items[:-1]))]
        return made
    value = _value(items[0]) if items else None
    if value is not None:
        tol = Case(row, "", "").official_tolerance
        tol = tol[0] if isinstance(tol, list) else tol
        made += [
            ("rounded_6", f"{value:.6f}"), ("times_100", _number(value * 100)), ("over_100", _number(value / 100)),
            ("inside_tolerance", _number(value + 1.005 * tol) if tol >= 1e-6 else f"{value:.15g}"),
            ("outside_tolerance", _number(value + 2 * max(tol, 1e-6))), ("plus_one", _number(value + 1)),
        ]
    elif items and "=" not in items[0]:
        made += [("plus_small", items[0] + "+0.0005"), ("plus_one", items[0] + "+1")]
    return made


def cases(rows: Sequence[OlympiadRow], limit: int | None = None, seed: int = 0) -> list[Case]:
    """Every variant of every row, or a seeded sample of ``limit`` of them."""
    made = [Case(row, name, answer) for row in rows for name, answer in variants(row)]
    if limit is not None and limit < len(made):
        made = random.Random(seed).sample(made, limit)
    return made


def _huge(text: str) -> bool:
    value = _value(clean_answer(text, None).text)
    return value is not None and abs(value) > 2.0**53


Deviation = Callable[[Case, Verdict, OfficialReference], bool]

DEVIATIONS: tuple[tuple[str, Deviation], ...] = (
    # The official code cannot read "\%": it drops "%" and keeps the backslash.
    ("escaped_percent", lambda case, ours, ref: "\\%" in case.official_gold or "\\%" in case.answer),
    # A gold with "$" inside ("$221,$8$") is read by the official code from its "$...$" pieces.
    ("dollar_pieces", lambda case, ours, ref: case.official_gold.strip().strip("$").count("$") > 0),
    # The official code compares strings with their spaces ("m_{\max }" is not "m_{\max}").
    ("insignificant_spaces", lambda case, ours, ref: ref.judge(
        case.answer.replace(" ", ""), case.official_gold.replace(" ", ""), case.official_tolerance) == ours.correct),
    # Beyond 2^53 the official code compares 15-digit floats (and refuses powers above 1000).
    ("exact_arithmetic", lambda case, ours, ref: _huge(case.official_gold)),
    # Equations equal up to any non-zero factor (3y = 6x + 3 for 2y = 4x + 2) are accepted by the
    # math-verify stage; the official code wants an integer factor.
    ("equations_by_math_verify", lambda case, ours, ref: ours.reason == "math_verify" and "=" in case.answer),
)


# How a whole output states its answer (ANSWER stands for it), each read by another extraction rule.
OUTPUT_FORMS: dict[str, str] = {
    "final_answer_line": "We compute it step by step.\nSo the final answer is $\\boxed{ANSWER}$.",
    "last_box": "We compute it step by step, and the result is\n$\\boxed{ANSWER}$",
    "last_line_inline_math": "Let $x$ be the unknown; we compute it step by step.\nThus the result is $ANSWER$.",
}


@dataclass(frozen=True)
class Comparison:
    case: Case
    ours: bool
    reason: str
    official: bool
    deviation: str | None
    form: str = "answer"

    @property
    def agree(self) -> bool:
        return self.ours == self.official


def _compared(case: Case, verdict: Verdict, official: bool, reference: OfficialReference, form: str) -> Comparison:
    """One comparison, with the documented deviation behind a disagreement (``None``: none fits)."""
    deviation = None
    if verdict.correct != official:
        deviation = next((name for name, applies in DEVIATIONS if applies(case, verdict, reference)), None)
    return Comparison(case, verdict.correct, verdict.reason, official, deviation, form)


def compare(items: Sequence[Case], reference: OfficialReference | None = None) -> list[Comparison]:
    """Judge every case both ways; name the documented deviation behind each disagreement."""
    reference = reference or OfficialReference()
    return [
        _compared(case, judge_olympiad(case.answer, case.row.gold),
                  reference.judge(case.answer, case.official_gold, case.official_tolerance), reference, "answer")
        for case in items
    ]


def compare_outputs(items: Sequence[Case], form: str, reference: OfficialReference | None = None) -> list[Comparison]:
    """Judge every case stated in a whole output of ``form`` (:data:`OUTPUT_FORMS`): infuser
    extracts the answer and judges it; the reference takes the official pipeline's answer
    (:func:`official_answer`) and judges that. Answers holding ``$`` cannot be stated inline and
    are left out."""
    reference = reference or OfficialReference()
    out = []
    for case in items:
        if "$" in case.answer:
            continue
        output = OUTPUT_FORMS[form].replace("ANSWER", case.answer)
        verdict = judge_olympiad(extract_olympiad_answer(output).answer, case.row.gold)
        official = reference.judge(official_answer(output), case.official_gold, case.official_tolerance)
        out.append(_compared(case, verdict, official, reference, form))
    return out
