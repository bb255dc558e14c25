"""The math-verify stage of the union judge: pairs the official rules rejected, checked by math-verify.

math-verify (gold first, LaTeX extraction only, its own signal-based timeouts off because they do
not work outside the main thread) is applied per item pair inside the official one-to-one
matching, so the official count rule holds. It widens the official rules only where they cannot
read an answer; it never decides numeric closeness, which is the row's tolerance's to decide:

* a pair of closed-form numbers is left to the official rule (math-verify would round floats to 6
  decimals and accept ``1.414214`` for ``\\sqrt{2}`` under a ``1e-8`` tolerance);
* elsewhere (a float inside a tuple, say) math-verify rounds to the decimals the tolerance allows:
  two values that agree after rounding to ``n`` decimals differ by less than ``10^-n <= error``;
* pairs whose letters differ only in case skip it (math-verify lower-cases symbols, which makes
  ``N = n`` and ``N = n + 1`` alike), and so do answers with numbers too large to evaluate.

Run it under :mod:`infuser.eval.limits`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.numbers import AnswerParseError, parse_number
from infuser.eval.olympiad.official import Prepared, judge_items, official_item, prepare
from infuser.eval.olympiad.symbolic import AnswerTooLarge, numeric_value, to_sympy

MAX_FLOAT_DECIMALS = 15
"""Decimals a double holds; the rounding used when the tolerance is 0."""

_COMMAND = re.compile(r"\\[a-zA-Z]+")


def float_decimals(tol: float) -> int:
    """The decimals math-verify may round floats to under tolerance ``tol``: the most ``n`` with
    ``10^-n <= tol`` (at least 0, at most :data:`MAX_FLOAT_DECIMALS`)."""
    if tol <= 0:
        return MAX_FLOAT_DECIMALS
    return max(0, min(MAX_FLOAT_DECIMALS, math.ceil(-math.log10(tol))))


def _case_sensitive_symbols(*texts: str) -> bool:
    """Whether the texts use a letter in both cases (``N`` and ``n``): math-verify lower-cases
    symbols, which would make ``N = n`` and ``N = n + 1`` look alike."""
    letters = set("".join(_COMMAND.sub(" ", t) for t in texts))
    return any(ch.isalpha() and ch.isascii() and ch.swapcase() in letters for ch in letters if ch.islower())


def _closed_form_number(text: str) -> bool | None:
    """Whether ``text`` is a closed-form number; ``None`` when it holds a number too large to
    evaluate (then math-verify, which would evaluate it, is skipped too)."""
    try:
        return numeric_value(to_sympy(text)) is not None
    except AnswerTooLarge:
        return None
    except AnswerParseError:
        return False


def _skips_math_verify(gold: str, pred: str) -> bool:
    if _case_sensitive_symbols(gold, pred):
        return True
    gold_number, pred_number = _closed_form_number(gold), _closed_form_number(pred)
    if gold_number is None or pred_number is None:
        return True
    return gold_number and pred_number


def _math_verify_item(prepared: Prepared) -> Callable[[str, str, float], str | None]:
    from math_verify import parse, verify

    config = [_mv_config()]
    official = official_item(prepared)

    def equal(g: str, p: str, tol: float) -> str | None:
        reason = official(g, p, tol)
        if reason is not None:
            return reason
        if _skips_math_verify(g, p):
            return None
        gold_text = g + ("\\%" if prepared.gold_percent else "")
        pred_text = p + ("\\%" if prepared.pred_percent else "")
        try:
            parsed_gold = parse(f"$\\boxed{{{gold_text}}}$", extraction_config=config, parsing_timeout=None)
            parsed_pred = parse(f"$\\boxed{{{pred_text}}}$", extraction_config=config, parsing_timeout=None)
            if not parsed_gold or not parsed_pred:
                return None
            ok = verify(parsed_gold, parsed_pred, float_rounding=float_decimals(tol), timeout_seconds=None)
        except Exception:
            return None
        return "math_verify" if ok else None

    return equal


def _mv_config() -> Any:
    from math_verify import LatexExtractionConfig

    return LatexExtractionConfig(boxed_match_priority=0)


def judge_math_verify(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """The union judge's second stage: items matched one to one as in
    :func:`~infuser.eval.olympiad.official.judge_official`, each pair accepted when the official
    rules *or* math-verify accept it (see the module docstring for where math-verify is not asked).

    Applying math-verify per item keeps the official count rule: math-verify alone compares
    several answers as sets, so ``-2, -2`` would equal ``-2``. Run under
    :mod:`infuser.eval.limits`. Never raises.
    """
    prepared = prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return prepared
    return judge_items(prepared, _math_verify_item(prepared))


def _plain_numbers(items: list[str]) -> bool:
    try:
        for item in items:
            parse_number(item)
    except AnswerParseError:
        return False
    return True


def needs_math_verify(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> bool:
    """Whether the math-verify stage could still accept an answer the official stage rejected.

    ``False`` when the preparation already decides (no answer, too long, unbalanced, a count
    mismatch) or every item on both sides is a plain number (numbers are the tolerance's to
    decide). Skipping those keeps judging fast.
    """
    prepared = prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return False
    return not (_plain_numbers(prepared.gold_items) and _plain_numbers(prepared.pred_items))
