"""Bounded sympy: LaTeX parsed by latex2sympy's grammar, with size limits checked before any evaluation.

Nothing here calls ``eval``, ``exec`` or ``sympify``/``parse_expr`` on a string. Inputs longer than
:data:`MAX_JUDGED_CHARS` or nested deeper than :data:`MAX_NESTING` are refused, and a parsed tree
whose numbers would have more than :data:`MAX_MAGNITUDE_DIGITS` digits is never evaluated. sympy is
imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from typing import Any

from infuser.eval.olympiad.numbers import AnswerParseError
from infuser.eval.olympiad.structure import nesting_depth

MAX_JUDGED_CHARS = 1_000
MAX_NESTING = 40
"""Answers with brackets nested deeper than this are not parsed (the grammar slows down)."""
MAX_MAGNITUDE_DIGITS = 20_000
"""Values with more digits than this (``10^{10^{10}}``) are never evaluated: computing them
would take the judge's time and memory. Such answers are still compared as strings."""
MAX_EXPANDED_TERMS = 10_000
"""Polynomials whose expansion could have more terms than this are never expanded or simplified
(``(a+b+c+d+e)^{40}`` has 135,751): sympy would spend minutes on them. Compared as strings."""
MAX_SERIES_TERMS = 1_000
"""Sums and products over more terms than this (``\\prod_{k=1}^{10^8} k``) are never evaluated."""


class AnswerTooLarge(AnswerParseError):
    """The answer nests too deeply or holds a number too large to evaluate safely."""


@lru_cache(maxsize=1)
def _latex_converter() -> tuple[Callable[..., Any], Any]:
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

    return latex2sympy, ConversionConfig(lowercase_symbols=False)


@lru_cache(maxsize=512)
def to_sympy(text: str) -> Any:
    """Parse a cleaned LaTeX answer with latex2sympy's grammar (no ``eval``, no ``sympify``).

    Raises:
        AnswerParseError: empty, too long, or not valid LaTeX math.
    """
    if not text or len(text) > MAX_JUDGED_CHARS:
        raise AnswerParseError("empty or too long to parse")
    if nesting_depth(text) > MAX_NESTING:
        raise AnswerTooLarge("nested too deeply to parse")
    convert, config = _latex_converter()
    try:
        expr = convert(text, normalization_config=None, conversion_config=config)
    except Exception as exc:  # the ANTLR grammar raises plain Exception subclasses
        raise AnswerParseError(f"cannot parse {text[:60]!r}: {type(exc).__name__}") from exc
    if _log10_bound(expr) > MAX_MAGNITUDE_DIGITS:
        raise AnswerTooLarge("a number in the answer is too large to evaluate")
    if _long_series(expr) or _expanded_terms(expr) > MAX_EXPANDED_TERMS:
        raise AnswerTooLarge("the answer is too large to expand or to evaluate term by term")
    return expr


def _long_series(expr: Any) -> bool:
    """Whether ``expr`` holds a sum or product over more than :data:`MAX_SERIES_TERMS` terms."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    for series in expr.atoms(sympy.Sum, sympy.Product):
        for limit in series.limits:
            if len(limit) == 3 and limit[1].is_number and limit[2].is_number:
                try:
                    count = float(limit[2] - limit[1]) + 1
                except (TypeError, ValueError, OverflowError):
                    return True
                if not count <= MAX_SERIES_TERMS:
                    return True
    return False


def _expanded_terms(expr: Any, depth: int = 0) -> float:
    """A rough upper bound on the number of terms ``expand`` could produce from ``expr``. Walks the
    tree without evaluating it."""
    import math

    import sympy

    inf = float("inf")
    if depth > 60:
        return inf
    args = getattr(expr, "args", ())
    if not isinstance(args, tuple) or not args or not getattr(expr, "free_symbols", None):
        return 1.0
    children = [_expanded_terms(a, depth + 1) if isinstance(a, sympy.Basic) else 1.0 for a in args]
    if isinstance(expr, sympy.Mul):
        return math.prod(children)
    if isinstance(expr, sympy.Pow):
        base, exponent = children[0], args[1]
        if not (exponent.is_Integer and exponent > 0) or base <= 1:
            return max(children)
        power = int(exponent) if exponent < 10**6 else 10**6
        # multinomial terms of (t_1 + ... + t_base)^power: C(base + power - 1, power)
        log_terms = math.lgamma(base + power) - math.lgamma(power + 1) - math.lgamma(base)
        return inf if log_terms > 700 else math.exp(log_terms)
    return sum(children)


def _log10_bound(expr: Any, depth: int = 0) -> float:
    """A rough upper bound on the number of decimal digits any numeric sub-expression of ``expr``
    can reach when evaluated (symbols count as small). Walks the tree without evaluating it."""
    import math

    import sympy

    inf = float("inf")
    if depth > 60:
        return inf
    if isinstance(expr, sympy.Integer):
        p = abs(int(expr.p))
        return float(p.bit_length()) * 0.30103 + 1
    if isinstance(expr, sympy.Rational):
        return (max(abs(int(expr.p)), abs(int(expr.q))).bit_length()) * 0.30103 + 1
    if isinstance(expr, sympy.Float):
        value = abs(float(expr)) if expr.is_finite else 0.0
        return math.log10(value) + 1 if value > 1 else 1.0
    args = getattr(expr, "args", ())
    if not isinstance(args, tuple) or not args:
        return 1.0
    if isinstance(expr, sympy.Pow):
        base_digits = _log10_bound(args[0], depth + 1)
        exp_digits = _log10_bound(args[1], depth + 1)
        if exp_digits > 6:
            return inf if base_digits > 0.5 else base_digits
        exponent = args[1]
        try:
            magnitude = abs(float(exponent.evalf(15))) if not exponent.free_symbols else 10.0
        except (TypeError, ValueError, AttributeError):
            magnitude = 10.0 ** exp_digits
        return base_digits * max(1.0, magnitude)
    if isinstance(expr, sympy.factorial):
        n_digits = _log10_bound(args[0], depth + 1)
        if n_digits > 6:
            return inf
        try:
            n = abs(float(args[0].evalf(15))) if not args[0].free_symbols else 10.0
        except (TypeError, ValueError, AttributeError):
            return inf
        return n * max(1.0, math.log10(max(n, 1.0))) + 1
    bounds = [_log10_bound(a, depth + 1) if hasattr(a, "args") else 1.0 for a in args]
    if isinstance(expr, sympy.Mul):
        return sum(bounds)
    return max(bounds) + 1


def numeric_value(expr: Any) -> complex | None:
    """A complex value for a closed-form sympy expression, ``None`` if it has free symbols or is
    not a finite number."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    try:
        value = complex(expr.evalf(50))
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None
    if value != value or abs(value) == float("inf"):
        return None
    return value


def exact_value(expr: Any) -> Fraction | None:
    """The exact rational value of a closed-form expression that is one, else ``None``."""
    import sympy

    try:
        if isinstance(expr, sympy.Rational):
            return Fraction(int(expr.p), int(expr.q))
        if isinstance(expr, sympy.Expr) and not expr.free_symbols:
            value = sympy.nsimplify(expr) if expr.is_Float else expr.doit()
            if isinstance(value, sympy.Rational):
                return Fraction(int(value.p), int(value.q))
    except Exception:
        return None
    return None
