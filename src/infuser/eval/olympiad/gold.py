"""What an OlympiadBench answer is judged against, the judge's knobs, and its verdict.

These types carry no judging logic, so that the row loader (:mod:`infuser.eval.data`) can build a
gold answer and validate a row's ``answer_type`` and ``error`` without importing the judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_TOLERANCE = 1e-8
ANSWER_TYPES = ("Numerical", "Expression", "Equation", "Tuple", "Interval")


@dataclass(frozen=True)
class OlympiadGold:
    """What a prediction is judged against.

    Attributes:
        answers: the gold final answers as stored (``final_answer``); the judge compares against
            the first, as the official one does (several answers of one question are
            comma-joined inside it, as in the 675-row file).
        answer_type: ``Numerical``, ``Expression``, ``Equation``, ``Tuple`` or ``Interval``
            (comma-joined combinations occur in physics rows). Rows of a ``Tuple`` type are judged
            with the default tolerance whatever their ``error`` says (the official rule).
        is_multiple_answer: the question has several answers.
        unit: the unit the answer is expressed in, stripped from both sides before comparing.
        tolerances: absolute tolerance per answer (one value applies to all; ``None`` for an
            empty part of ``error``); empty means the default tolerance.
    """

    answers: tuple[str, ...]
    answer_type: str = "Numerical"
    is_multiple_answer: bool = False
    unit: str | None = None
    tolerances: tuple[float | None, ...] = ()

    @property
    def text(self) -> str:
        """The gold answer judged against: the first of :attr:`answers`."""
        return self.answers[0] if self.answers else ""


@dataclass(frozen=True)
class JudgeSettings:
    """Knobs of the OlympiadBench judge (recorded in ``results.json``).

    Attributes:
        percent_allowance: ``"always"`` also accepts an answer whose x100 or /100 matches the
            gold, for pairs of decimal literals (the official judge's behaviour, so our numbers
            stay comparable with published ones); ``"when_percent"`` only when either side or
            the unit mentions ``%``. With a percent sign the allowance covers every plain number.
        use_math_verify: add math-verify's verdict (the union). Off only for debugging.
        default_tolerance: absolute tolerance when the row has no ``error`` (the official
            ``1e-8``).
    """

    percent_allowance: Literal["always", "when_percent"] = "always"
    use_math_verify: bool = True
    default_tolerance: float = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class Verdict:
    """The judge's decision and why (``exact``, ``numeric``, ``symbolic``, ``equation``,
    ``interval``, ``tuple``, ``set``, ``math_verify``, ``mismatch``, ``no_answer``,
    ``count_mismatch``, ``too_long``, ``unbalanced``)."""

    correct: bool
    reason: str


def parse_tolerances(error: str | float | None) -> tuple[float | None, ...]:
    """Parse OlympiadBench's ``error`` field: ``None``, a number, or comma-separated numbers.

    An empty part (``"1e-2,"``) keeps its position as ``None``: that answer gets the default
    tolerance, as in the official judge.

    Raises:
        ValueError: a part is not a non-negative finite number.
    """
    if error is None:
        return ()
    parts = [str(error)] if isinstance(error, (int, float)) else [p.strip() for p in str(error).split(",")]
    if not any(parts):
        return ()
    values: list[float | None] = []
    for part in parts:
        if not part:
            values.append(None)
            continue
        value = float(part)  # float() parses literals only; no evaluation
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"tolerance must be a non-negative finite number, got {part!r}")
        values.append(value)
    return tuple(values)


