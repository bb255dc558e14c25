"""Equality of one gold item and one predicted item under the official OlympiadBench rules.

Both items are cleaned (:mod:`~infuser.eval.olympiad.cleanup`) and hold one answer each. The rules
are tried from the most to the least structured: identical strings, equations and one-sided
assignments, unions of intervals, bracketed groups (tuples, intervals, sets), plain numbers with the
tolerance, and finally sympy (numerically with the tolerance when both sides are closed-form,
otherwise symbolically).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from infuser.eval.olympiad.numbers import AnswerParseError, PercentRule, close, parse_number, percent_applies
from infuser.eval.olympiad.structure import Group, outer_group, split_equation, union_pieces
from infuser.eval.olympiad.symbolic import exact_value, numeric_value, to_sympy

SYMBOLIC_TOLERANCE = 1e-3
"""The official rule for expressions with free symbols: equal when ``simplify(gold - answer)`` is a
number smaller than this in magnitude (whatever the row's ``error``)."""


@dataclass
class _Context:
    tol: float
    reasons: list[str] = field(default_factory=list)


def _equal(gold: str, pred: str, ctx: _Context, depth: int = 0, percent: PercentRule = "none") -> bool:
    """Official-semantics equality of one gold item and one predicted item (both cleaned).

    ``percent`` says where the x100 and /100 scaling of a plain-number answer applies; the official
    judge applies it to whole answers only, never inside tuples, intervals or one side of an
    equation.
    """
    if depth > 6:
        return False
    if gold == pred:
        ctx.reasons.append("exact")
        return True
    if not gold or not pred:
        return False

    g_sides, p_sides = split_equation(gold), split_equation(pred)
    if len(g_sides) > 1 or len(p_sides) > 1:
        if len(g_sides) > 1 and len(p_sides) > 1:
            if g_sides[0] == p_sides[0] and _equal(g_sides[-1], p_sides[-1], ctx, depth + 1):
                return True
            return _equation_equal(g_sides, p_sides, ctx)
        if len(g_sides) > 1:
            return _equal(g_sides[-1], pred, ctx, depth + 1)
        return _equal(gold, p_sides[-1], ctx, depth + 1)

    g_union, p_union = union_pieces(gold), union_pieces(pred)
    if g_union or p_union:
        if not (g_union and p_union) or len(g_union) != len(p_union):
            return False
        if match_items(g_union, p_union, lambda g, p: _equal(g, p, ctx, depth + 1)):
            ctx.reasons.append("interval")
            return True
        return False

    g_group, p_group = outer_group(gold), outer_group(pred)
    if g_group or p_group:
        if not (g_group and p_group):
            return False
        return _group_equal(g_group, p_group, ctx, depth)

    try:
        g_num, p_num = parse_number(gold), parse_number(pred)
    except AnswerParseError:
        pass
    else:
        if close(p_num, g_num, ctx.tol, percent_applies(percent, gold, pred)):
            ctx.reasons.append("numeric")
            return True
        return False

    return _sympy_equal(gold, pred, ctx)


def _group_equal(gold: Group, pred: Group, ctx: _Context, depth: int) -> bool:
    if gold.open == "{" or pred.open == "{":
        if not (gold.open == pred.open == "{") or len(gold.items) != len(pred.items):
            return False
        if match_items(list(gold.items), list(pred.items), lambda g, p: _equal(g, p, ctx, depth + 1)):
            ctx.reasons.append("set")
            return True
        return False
    if (gold.open, gold.close) != (pred.open, pred.close) or len(gold.items) != len(pred.items):
        return False
    if all(_equal(g, p, ctx, depth + 1) for g, p in zip(gold.items, pred.items)):
        is_tuple = gold.open == "(" and gold.close == ")" and not any("\\infty" in g for g in gold.items)
        ctx.reasons.append("tuple" if is_tuple else "interval")
        return True
    return False


def _equation_equal(gold_sides: list[str], pred_sides: list[str], ctx: _Context) -> bool:
    """The official rule: ``lhs - rhs`` of one equation is a non-zero integer multiple of the
    other's (``y = 2x + 1`` equals ``4x - 2y + 2 = 0``, not ``3y = 6x + 3`` halved)."""
    if len(gold_sides) != 2 or len(pred_sides) != 2:
        return False
    import sympy

    try:
        g = to_sympy(gold_sides[0]) - to_sympy(gold_sides[1])
        p = to_sympy(pred_sides[0]) - to_sympy(pred_sides[1])
    except (AnswerParseError, TypeError):
        return False
    try:
        if g == 0 or p == 0:
            return False
        for ratio in (sympy.simplify(p / g), sympy.simplify(g / p)):
            if ratio.is_Integer and ratio != 0:
                ctx.reasons.append("equation")
                return True
    except Exception:
        return False
    return False


def _sympy_equal(gold: str, pred: str, ctx: _Context) -> bool:
    """Closed-form values within the tolerance (exactly when both are rational); otherwise the
    official symbolic rule (:data:`SYMBOLIC_TOLERANCE`)."""
    import sympy

    try:
        g, p = to_sympy(gold), to_sympy(pred)
    except AnswerParseError:
        return False
    if not isinstance(g, sympy.Expr) or not isinstance(p, sympy.Expr):
        try:
            if g == p:
                ctx.reasons.append("symbolic")
                return True
        except Exception:
            return False
        return False
    g_val, p_val = exact_value(g), exact_value(p)
    if g_val is None or p_val is None:
        g_val, p_val = numeric_value(g), numeric_value(p)
    if g_val is not None and p_val is not None:
        if close(p_val, g_val, ctx.tol, percent=False):
            ctx.reasons.append("numeric")
            return True
        return False
    if (g_val is None) != (p_val is None):
        return False  # a number against an expression with free symbols
    try:
        diff = g - p
        for reduce in (sympy.expand, sympy.simplify):
            reduced = reduce(diff)
            if reduced == 0:
                ctx.reasons.append("symbolic")
                return True
            value = numeric_value(reduced)
            if value is not None and abs(value) < SYMBOLIC_TOLERANCE:
                ctx.reasons.append("symbolic")
                return True
    except Exception:
        return False
    return False


def match_items(gold: list[str], pred: list[str], equal: Callable[[str, str], bool]) -> bool:
    """One-to-one matching of gold and predicted items in any order (greedy, identical strings
    first)."""
    if len(gold) != len(pred):
        return False
    remaining = list(pred)
    pending: list[str] = []
    for g in gold:
        if g in remaining:
            remaining.remove(g)
        else:
            pending.append(g)
    for g in pending:
        for j, p in enumerate(remaining):
            if equal(g, p):
                del remaining[j]
                break
        else:
            return False
    return True


@lru_cache(maxsize=4096)
def official_pair(gold: str, pred: str, tol: float, percent: PercentRule) -> str | None:
    """Official equality of one gold item and one predicted item: the reason, or ``None``.

    ``percent``: where the percentage allowance applies to this answer.

    Cached because the math-verify stage repeats the official comparison of every pair (to
    match items one to one with either judge); with one worker both stages share the cache.
    """
    ctx = _Context(tol)
    if not _equal(gold, pred, ctx, percent=percent):
        return None
    kinds = [r for r in ctx.reasons if r != "exact"]
    return kinds[-1] if kinds else "exact"
