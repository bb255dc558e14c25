"""OlympiadBench judging: the official semantics, united with math-verify.

An answer is correct when either judge accepts it:

(a) **Official semantics** (re-implemented from the OlympiadBench paper's rules, not copied):
    answers are compared after LaTeX clean-up (``$``, ``\\left``/``\\right``, spacing, ``\\text``,
    degrees, the row's unit); several answers are split at top-level commas and matched in any
    order, one to one; ``\\pm`` stands for both signs; numbers agree within the row's absolute
    tolerance ``error`` (default ``1e-8``), also after multiplying or dividing the gold by 100
    (the percentage allowance); intervals (open/closed ends, unions, ``\\{...\\}`` pieces) and
    tuples are compared piece by piece; an equation equals another when one side matches and the
    other sides agree, or when ``lhs - rhs`` of one is a non-zero constant multiple of the other's;
    one-sided assignments (``k = 3`` against ``3``) are compared on their right-hand side; other
    expressions are compared symbolically (``simplify(a - b) == 0``), or numerically with the
    tolerance when they have no free symbols.
(b) **math-verify** with the gold answer first, LaTeX extraction only.

Safety: nothing here calls ``eval``, ``exec`` or ``sympify``/``parse_expr`` on a string. LaTeX is
parsed with latex2sympy's ANTLR grammar (``latex2sympy2_extended``), plain numbers with
``fractions.Fraction``. Answers longer than :data:`MAX_JUDGED_CHARS` only get the exact-string
check. Symbolic work can still be slow on adversarial input, so the scorer runs these functions
in :mod:`infuser.eval.limits` workers with a per-item time limit; math-verify's own signal-based
timeouts are switched off (they do not work outside the main thread).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from infuser.eval.extract import match_braces, unbox

if TYPE_CHECKING:  # pragma: no cover
    from infuser.eval.data import OlympiadRow

DEFAULT_TOLERANCE = 1e-8
MAX_JUDGED_CHARS = 1_000
MAX_ITEMS = 64
MAX_NUMBER_DIGITS = 400
MAX_NESTING = 40
"""Answers with brackets nested deeper than this are not parsed (the grammar slows down)."""
MAX_MAGNITUDE_DIGITS = 20_000
"""Values with more digits than this (``10^{10^{10}}``) are never evaluated: computing them
would take the judge's time and memory. Such answers are still compared as strings."""

ANSWER_TYPES = ("Numerical", "Expression", "Equation", "Tuple", "Interval")


class AnswerParseError(ValueError):
    """An answer string could not be turned into a number or a sympy object.

    The only exception the parsing helpers of this module raise; the ``judge_*`` functions catch
    it (and anything sympy raises) and treat the comparison as failed.
    """


class AnswerTooLarge(AnswerParseError):
    """The answer nests too deeply or holds a number too large to evaluate safely."""


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

    @classmethod
    def from_row(cls, row: OlympiadRow) -> OlympiadGold:
        return cls(
            answers=tuple(row.final_answer),
            answer_type=row.answer_type,
            is_multiple_answer=row.is_multiple_answer,
            unit=row.unit,
            tolerances=parse_tolerances(row.error),
        )

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


# -- clean-up ------------------------------------------------------------------------------------

_SIZE_COMMANDS = re.compile(r"\\(?:left|right|bigg|Bigg|big|Big)[lr]?(?![a-zA-Z])\s*")
_SPACING = re.compile(r"\\[,;:! ]|~|\\q?quad(?![a-zA-Z])|\\(?:display|text|script)style(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z])")
_PERCENT = re.compile(r"\\%|%|\\percent(?![a-zA-Z])")
_WRAPPERS = ("\\text", "\\textbf", "\\textrm", "\\textit", "\\mathrm", "\\mathbf", "\\mathit", "\\mbox", "\\rm")
_RENAMES = (
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\(?:geqslant|geq|ge)(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\(?:leqslant|leq|le)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])"), r"\\neq"),
    (re.compile(r"≤"), r"\\leq"),
    (re.compile(r"≥"), r"\\geq"),
    (re.compile(r"−"), "-"),
    (re.compile(r"∞"), r"\\infty"),
    (re.compile(r"\\(?:infin|inf)(?![a-zA-Z])"), r"\\infty"),
)
_COMMAND_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")
_WORD_SEPARATORS = re.compile(r"\s+(?:or|and)\s+|\s*;\s*")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _unwrap_commands(text: str, commands: Sequence[str]) -> str:
    """Replace ``\\text{X}`` (and the other wrappers) by ``X``, braces matched."""
    for _ in range(32):
        pairs = match_braces(text)
        best: tuple[int, int, int] | None = None
        for cmd in commands:
            start = 0
            while True:
                i = text.find(cmd + "{", start)
                if i < 0:
                    break
                open_at = i + len(cmd)
                if open_at in pairs:
                    if best is None or i < best[0]:
                        best = (i, open_at, pairs[open_at])
                    break
                start = i + 1
        if best is None:
            return text
        i, open_at, close = best
        text = text[:i] + " " + text[open_at + 1 : close] + " " + text[close + 1 :]
    return text


def _squash(text: str) -> str:
    """Remove whitespace, except the one space that separates ``\\cmd`` from a following letter."""
    text = _COMMAND_SPACE.sub(r"\1 ", text.strip())
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            j = i - 1
            while j >= 0 and text[j].isalpha():
                j -= 1
            if j >= 0 and text[j] == "\\" and j < i - 1 and i + 1 < len(text) and text[i + 1].isalpha():
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Cleaned:
    """An answer after clean-up: canonical text and whether a percent sign was removed."""

    text: str
    percent: bool


def _unit_forms(unit: str | None) -> list[str]:
    if not unit:
        return []
    base = clean_answer(unit, None).text
    forms = {base, base.replace("^", ""), base.rstrip("s")} - {""}
    return sorted(forms, key=len, reverse=True)


def clean_answer(text: str, unit: str | None) -> Cleaned:
    """Canonical form of one answer string used for every comparison.

    Removes math delimiters, ``\\boxed``, sizing and spacing commands, ``\\text``-like wrappers,
    degree marks, percent signs (remembered), the row's unit at the end, a trailing full stop, and
    insignificant spaces. Never raises.
    """
    s = text.strip().replace("$", "").replace("\\(", "").replace("\\)", "")
    s = unbox(s.replace("\\[", "").replace("\\]", "").strip().rstrip(".;。").strip())
    s = _SIZE_COMMANDS.sub("", s)
    s = _SPACING.sub(" ", s)
    for pattern, repl in _RENAMES:
        s = pattern.sub(repl, s)
    s = _unwrap_commands(s, _WRAPPERS)
    s = _DEGREES.sub("", s)
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    s = _WORD_SEPARATORS.sub(",", s)
    s = _squash(s).rstrip(".;。").strip()
    for form in _unit_forms(unit):
        if s.endswith(form) and len(s) > len(form):
            s = s[: -len(form)].rstrip("\\ ,")
            break
    s = s.replace("^{}", "")
    return Cleaned(s, percent)


# -- structure: commas, equations, brackets ------------------------------------------------------

_OPEN = "([{"
_CLOSE = ")]}"


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` characters outside any bracket (``()[]{}``, mixed ends allowed: ``(0,4]``)."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            depth += 1 if text[i + 1] == "{" else -1
            i += 2
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def split_equation(text: str) -> list[str]:
    """Split at top-level ``=`` signs (not ``<=``, ``>=``, ``!=``, ``:=``, ``==``)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        elif ch == "=" and depth == 0:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if (before and before in "<>!:=") or after == "=":
                continue
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Group:
    """A bracketed, comma-separated group: a tuple ``(a,b,c)``, an interval ``(a,b]`` or a set
    ``\\{a,b\\}``."""

    open: str
    close: str
    items: tuple[str, ...]


def _outer_group(text: str) -> Group | None:
    """``text`` as one bracketed group whose brackets enclose it entirely, with >= 1 comma (or a
    set), else ``None``. ``(n-1)(n+1)`` and ``(n-1)`` are not groups."""
    if text.startswith("\\{"):
        open_token, body_start = "\\{", 2
    elif text and text[0] in "([":
        open_token, body_start = text[0], 1
    else:
        return None
    depth = 0
    i = 0
    end = -1
    while i < len(text):
        if text.startswith("\\{", i):
            depth += 1
            i += 2
            continue
        if text.startswith("\\}", i):
            depth -= 1
            if depth == 0:
                end = i
                break
            i += 2
            continue
        ch = text[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                end = i
                break
        i += 1
    if end < 0:
        return None
    close_token = "\\}" if text.startswith("\\}", end) else text[end]
    if end + len(close_token) != len(text):
        return None
    body = text[body_start:end]
    items = split_top_level(body)
    if open_token == "\\{":
        return Group("{", "}", tuple(items))
    if close_token not in ")]" or len(items) < 2:
        return None
    return Group(open_token, close_token, tuple(items))


def _union_pieces(text: str) -> list[str] | None:
    pieces = [p for p in re.split(r"\\cup(?![a-zA-Z])", text)]
    if len(pieces) < 2:
        return None
    return [p.strip() for p in pieces]


# -- numbers and sympy ---------------------------------------------------------------------------

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
    if _nesting_depth(text) > MAX_NESTING:
        raise AnswerTooLarge("nested too deeply to parse")
    convert, config = _latex_converter()
    try:
        expr = convert(text, normalization_config=None, conversion_config=config)
    except Exception as exc:  # the ANTLR grammar raises plain Exception subclasses
        raise AnswerParseError(f"cannot parse {text[:60]!r}: {type(exc).__name__}") from exc
    if _log10_bound(expr) > MAX_MAGNITUDE_DIGITS:
        raise AnswerTooLarge("a number in the answer is too large to evaluate")
    return expr


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
    return deepest


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


def _numeric_value(expr: Any) -> complex | None:
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


def _exact_value(expr: Any) -> Fraction | None:
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


def _close(pred: complex | Fraction, gold: complex | Fraction, tol: float, percent: bool) -> bool:
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


# -- the official comparison ---------------------------------------------------------------------


@dataclass
class _Context:
    tol: float
    percent: bool
    reasons: list[str] = field(default_factory=list)


def _equal(gold: str, pred: str, ctx: _Context, depth: int = 0) -> bool:
    """Official-semantics equality of one gold item and one predicted item (both cleaned)."""
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

    g_union, p_union = _union_pieces(gold), _union_pieces(pred)
    if g_union or p_union:
        if not (g_union and p_union) or len(g_union) != len(p_union):
            return False
        if _match_items(g_union, p_union, lambda g, p: _equal(g, p, ctx, depth + 1)):
            ctx.reasons.append("interval")
            return True
        return False

    g_group, p_group = _outer_group(gold), _outer_group(pred)
    if g_group or p_group:
        if not (g_group and p_group):
            return False
        return _group_equal(g_group, p_group, ctx, depth)

    try:
        g_num, p_num = parse_number(gold), parse_number(pred)
    except AnswerParseError:
        pass
    else:
        if _close(p_num, g_num, ctx.tol, ctx.percent):
            ctx.reasons.append("numeric")
            return True
        return False

    return _sympy_equal(gold, pred, ctx)


def _group_equal(gold: Group, pred: Group, ctx: _Context, depth: int) -> bool:
    if gold.open == "{" or pred.open == "{":
        if not (gold.open == pred.open == "{") or len(gold.items) != len(pred.items):
            return False
        if _match_items(list(gold.items), list(pred.items), lambda g, p: _equal(g, p, ctx, depth + 1)):
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
    """``lhs - rhs`` of the prediction is a non-zero constant multiple of the gold's."""
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
        ratio = sympy.simplify(p / g)
        if ratio.free_symbols or ratio == 0 or not ratio.is_finite:
            return False
    except Exception:
        return False
    ctx.reasons.append("equation")
    return True


def _sympy_equal(gold: str, pred: str, ctx: _Context) -> bool:
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
    g_exact, p_exact = _exact_value(g), _exact_value(p)
    if g_exact is not None and p_exact is not None:
        if _close(p_exact, g_exact, ctx.tol, ctx.percent):
            ctx.reasons.append("numeric")
            return True
        return False
    g_val, p_val = _numeric_value(g), _numeric_value(p)
    if g_val is not None and p_val is not None:
        if _close(p_val, g_val, ctx.tol, ctx.percent):
            ctx.reasons.append("numeric")
            return True
        return False
    try:
        diff = g - p
        if sympy.expand(diff) == 0 or sympy.simplify(diff) == 0:
            ctx.reasons.append("symbolic")
            return True
    except Exception:
        return False
    return False


def _match_items(gold: list[str], pred: list[str], equal: Callable[[str, str], bool]) -> bool:
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


def _expand_pm(items: list[str], tols: list[float]) -> tuple[list[str], list[float]]:
    out: list[str] = []
    out_tols: list[float] = []
    for item, tol in zip(items, tols):
        if "\\pm" in item or "\\mp" in item:
            for plus, minus in (("+", "-"), ("-", "+")):
                out.append(item.replace("\\pm", plus).replace("\\mp", minus).replace("+-", "-").replace("--", "+"))
                out_tols.append(tol)
        else:
            out.append(item)
            out_tols.append(tol)
    return out, out_tols


def _strip_set_braces(text: str) -> str:
    group = _outer_group(text)
    if group is not None and group.open == "{" and len(group.items) > 1:
        return ", ".join(group.items)
    return text


def _is_percent_unit(unit: str | None) -> bool:
    return bool(unit) and ("%" in unit or "percent" in unit.lower())


def _items(cleaned: str, join_thousands: bool) -> list[str]:
    text = cleaned
    if join_thousands and _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return [item for item in split_top_level(_strip_set_braces(text)) if item][:MAX_ITEMS]


def _prepare(answer: str | None, gold: OlympiadGold, settings: JudgeSettings) -> Verdict | _Prepared:
    if answer is None or not answer.strip():
        return Verdict(False, "no_answer")
    if len(answer) > MAX_JUDGED_CHARS:
        return Verdict(False, "too_long")
    g_clean = clean_answer(gold.text, gold.unit)
    p_clean = clean_answer(answer, gold.unit)
    if g_clean.text == p_clean.text:
        return Verdict(True, "exact")
    percent = (
        settings.percent_allowance == "always" or g_clean.percent or p_clean.percent or _is_percent_unit(gold.unit)
    )
    g_items = _items(g_clean.text, join_thousands=not gold.is_multiple_answer)
    p_items = _items(p_clean.text, join_thousands=len(g_items) == 1)
    tols = list(gold.tolerances) or [settings.default_tolerance]
    if len(tols) != len(g_items):
        tols = [tols[0]] * len(g_items)
    g_items, tols = _expand_pm(g_items, tols)
    p_items, _ = _expand_pm(p_items, [0.0] * len(p_items))
    if not g_items or len(g_items) != len(p_items):
        return Verdict(False, "count_mismatch")
    return _Prepared(g_items, p_items, tols, percent, g_clean.percent, p_clean.percent)


@dataclass(frozen=True)
class _Prepared:
    gold_items: list[str]
    pred_items: list[str]
    tolerances: list[float]
    percent: bool
    gold_percent: bool
    pred_percent: bool


def _judge_items(prepared: _Prepared, item_equal: Callable[[str, str, float], str | None]) -> Verdict:
    """Match gold and predicted items one to one; ``item_equal`` returns a reason or ``None``."""
    reasons: list[str] = []
    remaining = list(prepared.pred_items)
    pairs = sorted(zip(prepared.gold_items, prepared.tolerances), key=lambda pair: pair[0] not in remaining)
    try:
        for g, tol in pairs:
            for j, p in enumerate(remaining):
                reason = item_equal(g, p, tol)
                if reason is not None:
                    reasons.append(reason)
                    del remaining[j]
                    break
            else:
                return Verdict(False, "mismatch")
    except RecursionError:
        return Verdict(False, "mismatch")
    kinds = sorted(set(reasons) - {"exact"})
    if not kinds:
        return Verdict(True, "exact")
    return Verdict(True, kinds[0] if len(kinds) == 1 else "+".join(kinds))


@lru_cache(maxsize=4096)
def _official_pair(gold: str, pred: str, tol: float, percent: bool) -> str | None:
    """Official equality of one gold item and one predicted item: the reason, or ``None``.

    Cached because the math-verify stage repeats the official comparison of every pair (to
    match items one to one with either judge); with one worker both stages share the cache.
    """
    ctx = _Context(tol, percent)
    if not _equal(gold, pred, ctx):
        return None
    kinds = [r for r in ctx.reasons if r != "exact"]
    return kinds[-1] if kinds else "exact"


def _official_item(prepared: _Prepared) -> Callable[[str, str, float], str | None]:
    def equal(g: str, p: str, tol: float) -> str | None:
        return _official_pair(g, p, tol, prepared.percent)

    return equal


def judge_official(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """Judge ``answer`` (an extracted final answer) with the official OlympiadBench semantics.

    Never raises: failures to parse count as "not equal".
    """
    prepared = _prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return prepared
    return _judge_items(prepared, _official_item(prepared))


# -- math-verify ---------------------------------------------------------------------------------

_COMMAND = re.compile(r"\\[a-zA-Z]+")


def _case_sensitive_symbols(*texts: str) -> bool:
    """Whether the texts use a letter in both cases (``N`` and ``n``): math-verify lower-cases
    symbols, which would make ``N = n`` and ``N = n + 1`` look alike."""
    letters = set("".join(_COMMAND.sub(" ", t) for t in texts))
    return any(ch.isalpha() and ch.isascii() and ch.swapcase() in letters for ch in letters if ch.islower())


def _too_large(text: str) -> bool:
    """math-verify would evaluate this answer's huge numbers; leave it to the string check."""
    try:
        to_sympy(text)
    except AnswerTooLarge:
        return True
    except AnswerParseError:
        return False
    return False


def _far_apart(gold: str, pred: str) -> bool:
    """Both items are closed-form numbers that differ far beyond any rounding math-verify allows
    (relative 1e-4), even after the x100 and /100 allowance; then math-verify cannot accept them
    and we skip its (sometimes very slow) symbolic path."""
    try:
        g_val, p_val = _numeric_value(to_sympy(gold)), _numeric_value(to_sympy(pred))
    except AnswerParseError:
        return False
    if g_val is None or p_val is None:
        return False
    for scale in (1.0, 100.0, 0.01):
        target = g_val * scale
        if abs(p_val - target) <= 1e-4 * max(1.0, abs(target)):
            return False
    return True


def _math_verify_item(prepared: _Prepared, settings: JudgeSettings) -> Callable[[str, str, float], str | None]:
    from math_verify import parse, verify

    config = [_mv_config()]
    official = _official_item(prepared)

    def equal(g: str, p: str, tol: float) -> str | None:
        reason = official(g, p, tol)
        if reason is not None:
            return reason
        if _case_sensitive_symbols(g, p) or _too_large(g) or _too_large(p) or _far_apart(g, p):
            return None
        gold_text = g + ("\\%" if prepared.gold_percent else "")
        pred_text = p + ("\\%" if prepared.pred_percent else "")
        try:
            parsed_gold = parse(f"$\\boxed{{{gold_text}}}$", extraction_config=config, parsing_timeout=None)
            parsed_pred = parse(f"$\\boxed{{{pred_text}}}$", extraction_config=config, parsing_timeout=None)
            if not parsed_gold or not parsed_pred:
                return None
            ok = verify(parsed_gold, parsed_pred, float_rounding=settings.float_rounding, timeout_seconds=None)
        except Exception:
            return None
        return "math_verify" if ok else None

    return equal


def _mv_config() -> Any:
    from math_verify import LatexExtractionConfig

    return LatexExtractionConfig(boxed_match_priority=0)


def judge_math_verify(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """The union judge's second stage: items matched one to one as in :func:`judge_official`,
    each pair accepted when the official rules *or* math-verify (gold first, LaTeX extraction only,
    its own signal timeouts off) accept it.

    Applying math-verify per item keeps the official count rule: math-verify alone compares
    several answers as sets, so ``-2, -2`` would equal ``-2``. Pairs whose letters differ only in
    case (math-verify lower-cases symbols) and pairs of numbers that are far apart skip
    math-verify. Run under :mod:`infuser.eval.limits`. Never raises.
    """
    prepared = _prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return prepared
    return _judge_items(prepared, _math_verify_item(prepared, settings))


def needs_math_verify(answer: str | None, gold: OlympiadGold) -> bool:
    """Whether the math-verify stage could still accept an answer the official stage rejected.

    ``False`` when there is no answer, it is too long, or both sides are plain integers without
    percent signs (math-verify compares those exactly too). Skipping those keeps judging fast.
    """
    if answer is None or not answer.strip() or len(answer) > MAX_JUDGED_CHARS:
        return False
    g_clean = clean_answer(gold.text, gold.unit)
    p_clean = clean_answer(answer, gold.unit)
    if g_clean.percent or p_clean.percent:
        return True
    return not (_INTEGER.fullmatch(g_clean.text) and _INTEGER.fullmatch(p_clean.text))


_INTEGER = re.compile(r"[+-]?\d{1,400}")


def judge_olympiad(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """The union judge in this process: :func:`judge_official`, then :func:`judge_math_verify`.

    Convenient for tests and notebooks; production scoring goes through
    :class:`infuser.eval.score.Scorer`, which runs each stage under the time limit.
    """
    verdict = judge_official(answer, gold, settings)
    if verdict.correct or not settings.use_math_verify or not needs_math_verify(answer, gold):
        return verdict
    second = judge_math_verify(answer, gold, settings)
    return second if second.correct else verdict


def warm_up() -> None:
    """Import and exercise the parsers once (called when a judge worker starts)."""
    judge_olympiad("\\frac{1}{2}", OlympiadGold(("0.5",)))
    judge_olympiad("x+1", OlympiadGold(("1+x",), "Expression"))
    judge_math_verify("0.5", OlympiadGold(("\\frac{1}{2}",)))
