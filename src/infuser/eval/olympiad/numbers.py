"""Plain numbers read exactly, and the tolerance rule that decides numeric equality.

``parse_number`` only accepts validated literals and builds a ``fractions.Fraction`` from them; no
string is ever evaluated.
"""

from __future__ import annotations

import re
from fractions import Fraction

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


def close(pred: complex | Fraction, gold: complex | Fraction, tol: float, percent: bool) -> bool:
    """Whether ``pred`` is within ``tol`` of ``gold`` (or of ``gold`` x 100 or / 100 when
    ``percent``); exact arithmetic when both are rationals."""
    scales: tuple[Fraction, ...] = (Fraction(1), Fraction(100), Fraction(1, 100)) if percent else (Fraction(1),)
    for scale in scales:
        if isinstance(pred, Fraction) and isinstance(gold, Fraction):
            if abs(pred - gold * scale) <= Fraction(tol) + Fraction(1, 10**30):
                return True
        else:
            target = complex(gold) * float(scale)
            if abs(complex(pred) - target) <= tol * (1 + 1e-12) + 1e-12 * max(1.0, abs(target)):
                return True
    return False
