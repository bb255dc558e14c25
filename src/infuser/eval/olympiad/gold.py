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
        answers: the gold final answers as stored (several answers may also be comma-joined in
            one string, as in the 675-row file).
        answer_type: ``Numerical``, ``Expression``, ``Equation``, ``Tuple`` or ``Interval``
            (comma-joined combinations occur in physics rows).
        is_multiple_answer: the question has several answers.
        unit: the unit the answer is expressed in, stripped from both sides before comparing.
        tolerances: absolute tolerance per answer (one value applies to all); empty means
            :data:`DEFAULT_TOLERANCE`.
    """

    answers: tuple[str, ...]
    answer_type: str = "Numerical"
    is_multiple_answer: bool = False
    unit: str | None = None
    tolerances: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        """All gold answers as one comma-separated string."""
        return ", ".join(a for a in self.answers if a.strip())


@dataclass(frozen=True)
class JudgeSettings:
    """Knobs of the OlympiadBench judge (recorded in ``results.json``).

    Attributes:
        percent_allowance: ``"always"`` accepts ``x*100`` and ``x/100`` for every numeric gold
            ``x`` (the official judge's behaviour, so our numbers stay comparable with published
            ones); ``"when_percent"`` only when either side or the unit mentions ``%``.
        use_math_verify: add math-verify's verdict (the union). Off only for debugging.
        default_tolerance: absolute tolerance when the row has no ``error``.
        float_rounding: math-verify's rounding for float comparisons.
    """

    percent_allowance: Literal["always", "when_percent"] = "always"
    use_math_verify: bool = True
    default_tolerance: float = DEFAULT_TOLERANCE
    float_rounding: int = 6


@dataclass(frozen=True)
class Verdict:
    """The judge's decision and why (``exact``, ``numeric``, ``symbolic``, ``equation``,
    ``interval``, ``tuple``, ``math_verify``, ``mismatch``, ``no_answer``, ``count_mismatch``,
    ``too_long``)."""

    correct: bool
    reason: str


def parse_tolerances(error: str | float | None) -> tuple[float, ...]:
    """Parse OlympiadBench's ``error`` field: ``None``, a number, or comma-separated numbers.

    Raises:
        ValueError: a part is not a non-negative finite number.
    """
    if error is None:
        return ()
    if isinstance(error, (int, float)):
        parts = [str(error)]
    else:
        parts = [p.strip() for p in str(error).split(",") if p.strip()]
    values: list[float] = []
    for part in parts:
        value = float(part)  # float() parses literals only; no evaluation
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"tolerance must be a non-negative finite number, got {part!r}")
        values.append(value)
    return tuple(values)


