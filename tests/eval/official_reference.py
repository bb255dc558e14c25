"""A reference reading of the official OlympiadBench judging rules, for the differential tests.

Written for infuser's tests from the rules as the OlympiadBench evaluation code applies them
(MIT-licensed; read, not copied), quirks included, so that infuser's judge can be compared with
them case by case. It is deliberately naive, it trusts its input (the tests generate it), and it
parses LaTeX with latex2sympy's grammar where the official code uses sympy's ``parse_latex``.

The model answer ``a`` is taken from a whole output first (:func:`official_answer`): the rest of
the line after the last ``So the final answer is``, or, without that phrase, the whole output.

The rules, in the order the official judge applies them to a model answer ``a`` and the gold
``g`` (the official call passes the model answer first, which decides where the tolerance list and
the percentage allowance apply):

1. clean-up of both: boxes extracted (several joined with commas; an unclosed box fails the whole
   comparison; without any box, every ``$...$`` on the last line, joined with commas, or else the
   whole text), text after ``\\in `` kept, ``\\left``/``\\right``/``$``/``%``/``^\\circ`` removed,
   ``\\approx``/``\\sim``/``\\simeq`` read as ``=``, leading and trailing punctuation stripped,
   ``\\mathrm{}``/``\\mathbf{}`` unwrapped; identical strings are equal;
2. both split at commas outside ``()`` and ``[]`` (braces do not count), ``\\pm`` expanded into
   both signs; the counts must agree; one tolerance is repeated for every item of ``a``;
3. items of ``a`` are visited in a rotating order and each is matched greedily to the first equal
   item of ``g`` left, with the tolerance at its position in ``a``;
4. two items are equal when: identical; or both bracketed and equal as intervals (``\\cup`` pieces
   in order, same brackets, elements compared pairwise with ``zip`` as expressions); or both
   read by ``float`` and ``|a x s - g| <= 1.01 x tol`` for ``s`` in ``1/100, 1, 100``; or, unless
   both hold ``=``, equal as expressions (the text after the first ``=``; closed-form numbers
   within ``1.01 x tol``, symbolic ones when ``|simplify(a - g)| < 1e-3``); or equal as equations
   (``lhs - rhs`` of one an integer multiple of the other's).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

_REPLACED = (
    ("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","), ("$", ""), ("\\approx", "="),
    ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"), ("^\\circ", ""), ("%", ""),
)
_STRIPPED = "\n$,.:;^_=+`!@#$%^&*~，。"


class _Unclosed(ValueError):
    pass


def official_answer(output: str) -> str:
    """The model answer the official pipeline judges: what follows the last ``So the final answer
    is `` (case-sensitive, to the line's end, stripped), else the whole output."""
    matches = re.findall("So the final answer is (.*)", output)
    return matches[-1].strip() if matches else output


def _boxed_parts(text: str) -> str:
    found = ""
    for m in re.finditer(r"\\boxed{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:
            raise _Unclosed(text)
        found += text[m.end() : i - 1] + ","
    if found:
        return found
    inline = re.findall(r"\$(.*?)\$", text.strip().split("\n")[-1])
    return "".join(part + "," for part in inline) if inline else text


def _clean(text: str) -> str:
    text = _boxed_parts(text)
    if "\\in " in text:
        text = text.split("\\in ")[1]
    for old, new in _REPLACED:
        text = text.replace(old, new)
    text = text.strip(_STRIPPED)
    return re.sub(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}", r"\1", text)


def _comma_split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if start < len(text):
        parts.append(text[start:].strip())
    return parts


def _with_both_signs(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += [item.replace("\\pm", "+"), item.replace("\\pm", "-")] if "\\pm" in item else [item]
    return out


@lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

    return latex2sympy(text, normalization_config=None, conversion_config=ConversionConfig(lowercase_symbols=False))


def _power_too_large(expr: Any) -> bool:
    import sympy

    if not isinstance(expr, sympy.Pow):
        return False
    base, exponent = expr.as_base_exp()
    return not (base.is_number and exponent.is_number) or abs(exponent.evalf()) > 1000


class OfficialReference:
    """``judge(answer, gold, tolerance)``: the official verdict for a model answer."""

    def judge(self, answer: str, gold: str, tolerance: float | list[float] = 1e-8) -> bool:
        tolerances = list(tolerance) if isinstance(tolerance, list) else [tolerance]
        try:
            a, g = _clean(answer), _clean(gold)
        except _Unclosed:
            return False
        if a == g:
            return True
        a = re.sub(r"[\u4e00-\u9fff]+", "", a)
        g = re.sub(r"[\u4e00-\u9fff]+", "", g)
        a_items, g_items = _with_both_signs(_comma_split(a)), _with_both_signs(_comma_split(g))
        if len(tolerances) <= 1:
            tolerances = tolerances * len(a_items)
        if len(a_items) != len(g_items):
            return False
        index = -1
        while a_items:
            index = (index + 1) % len(a_items)
            item, tol = a_items[index], tolerances[index]
            partner = next((other for other in g_items if self._equal(item, other, tol)), None)
            if partner is None:
                return False
            a_items.remove(item)
            g_items.remove(partner)
            tolerances.remove(tol)
        return True

    def _equal(self, a: str, g: str, tol: float) -> bool:
        if a == g and a != "":
            return True
        if a.startswith(("(", "[")) and a.endswith((")", "]")) and g.startswith(("(", "[")) and g.endswith((")", "]")):
            try:
                if self._intervals(a, g, tol):
                    return True
            except Exception:
                return False
        for rule in (self._numbers, self._expressions, self._equations):
            try:
                if rule(a, g, tol):
                    return True
            except Exception:
                pass
        return False

    def _intervals(self, a: str, g: str, tol: float) -> bool:
        if a == g:
            return True
        a_pieces, g_pieces = a.split("\\cup"), g.split("\\cup")
        if len(a_pieces) != len(g_pieces):
            return False
        for x, y in zip(a_pieces, g_pieces):
            if x[0] != y[0] or x[-1] != y[-1]:
                return False
            for u, v in zip(x.strip("[]()").split(","), y.strip("[]()").split(",")):
                if not self._expressions(u, v, tol):
                    return False
        return True

    @staticmethod
    def _numbers(a: str, g: str, tol: float) -> bool:
        value, target = float(a), float(g)
        return any(abs(value * scale - target) <= tol * 1.01 for scale in (0.01, 1, 100))

    def _expressions(self, a: str, g: str, tol: float) -> bool:
        import sympy

        if "=" in a and "=" in g:
            return False
        x = _parse(a.split("=")[1].strip() if "=" in a else a.strip())
        y = _parse(g.split("=")[1].strip() if "=" in g else g.strip())
        if x == y:
            return True
        x, y = x.subs(sympy.pi, math.pi), y.subs(sympy.pi, math.pi)
        x_symbolic, y_symbolic = x.has(sympy.Symbol), y.has(sympy.Symbol)
        if x_symbolic != y_symbolic:
            return False
        if not x_symbolic:
            if _power_too_large(x) or _power_too_large(y):
                return False
            return bool(abs(x.evalf() - y.evalf()) <= tol * 1.01)
        return bool(abs(sympy.simplify(x - y).evalf()) < 1e-3)

    @staticmethod
    def _equations(a: str, g: str, tol: float) -> bool:
        import sympy

        def moved(equation: str) -> Any:
            lhs, rhs = equation.split("=")
            return sympy.simplify(_parse(lhs) - _parse(rhs))

        x, y = moved(a), moved(g)
        return any(r.is_Integer and r != 0 for r in (sympy.simplify(x / y), sympy.simplify(y / x)))
