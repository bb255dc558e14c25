"""Plain numbers read exactly, and the tolerance rule that decides numeric equality.

``parse_number`` only accepts validated literals and builds a ``fractions.Fraction`` from them; no
string is ever evaluated.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

MAX_NUMBER_DIGITS = 400


class AnswerParseError(ValueError):
    """An answer string could not be turned into a number or a sympy object.

    The only exception the parsing helpers raise; the judges catch it (and anything sympy raises)
    and treat the comparison as failed.
    """


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH = re.compile(r"([+-]?\d+)/([+-]?\d+)")
_SCI = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot|\*)10\^(?:\{([+-]?\d{1,3})\}|([+-]?\d))")


def parse_number(text: str) -> Fraction:
    """An exact rational from a plain numeric answer: ``-3``, ``4.25``, ``1e-3``, ``\\frac{3}{4}``,
    ``-\\frac{3}{4}``, ``3/4``, ``1.5\\times10^{3}``.

    Uses ``fractions.Fraction`` on validated literals only.

    Raises:
        AnswerParseError: anything else (including too many digits).
    """
    s = text.strip()
    if not s or len(s) > MAX_NUMBER_DIGITS:
        raise AnswerParseError(f"not a plain number: {text[:40]!r}")
    try:
        if _NUMBER.fullmatch(s):
            return Fraction(s)
        m = _FRAC.fullmatch(s)
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) == "-" else value
        m = _SLASH.fullmatch(s)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _SCI.fullmatch(s)
        if m:
            exponent = int(m.group(2) or m.group(3))
            return Fraction(m.group(1)) * Fraction(10) ** exponent
    except (ValueError, ZeroDivisionError) as exc:
        raise AnswerParseError(f"not a plain number: {text[:40]!r}") from exc
    raise AnswerParseError(f"not a plain number: {text[:40]!r}")


TOLERANCE_SLACK = Fraction(101, 100)
"""The official rule accepts a difference up to ``1.01 x error``: a value written to the precision
of ``error`` itself (gold 2.37, error 0.1, answer 2.47) is not rejected by the last bit of its
binary representation."""

_FLOAT_SLACK = 1e-15
"""Two values evaluated to 50 digits and rounded to doubles differ by at most about 2.2e-16 of
their size; 1e-15 (relative) covers that, so two spellings of one irrational number agree even
with ``error: 0``."""

PERCENT_SCALES = (Fraction(1), Fraction(1, 100), Fraction(100))

PercentRule = Literal["none", "decimals", "numbers"]
"""Where the percentage allowance applies to an answer: nowhere; to pairs of decimal literals (what
the official judge's ``float()`` reads: ``62.5``, ``1e-3``); or to every plain number
(``\\frac{1}{6}`` too), which infuser allows when a percent sign says the answer is a percentage."""


def is_decimal(text: str) -> bool:
    """Whether ``text`` is a decimal literal (``-3``, ``4.25``, ``1e-3``)."""
    return _NUMBER.fullmatch(text.strip()) is not None


def percent_applies(rule: PercentRule, gold: str, answer: str) -> bool:
    """Whether the percentage allowance applies to this pair of plain numbers under ``rule``."""
    return rule == "numbers" or (rule == "decimals" and is_decimal(gold) and is_decimal(answer))


def close(answer: complex | Fraction, gold: complex | Fraction, tol: float, percent: bool) -> bool:
    """The official numeric rule: ``|answer x s - gold| <= 1.01 x tol`` for ``s = 1``, or also for
    ``s = 1/100`` and ``s = 100`` when ``percent`` (the percentage allowance scales the *answer*, as
    the official judge does). Exact arithmetic when both are rationals."""
    for scale in PERCENT_SCALES if percent else PERCENT_SCALES[:1]:
        if isinstance(answer, Fraction) and isinstance(gold, Fraction):
            if abs(answer * scale - gold) <= Fraction(tol) * TOLERANCE_SLACK:
                return True
        else:
            scaled = complex(answer) * float(scale)
            slack = _FLOAT_SLACK * max(1.0, abs(scaled), abs(complex(gold)))
            if abs(scaled - complex(gold)) <= tol * float(TOLERANCE_SLACK) + slack:
                return True
    return False
