"""The math-verify stage of the union judge: pairs the official rules rejected, checked by math-verify.

math-verify (gold first, LaTeX extraction only, its own signal-based timeouts off because they do
not work outside the main thread) is applied per item pair inside the official one-to-one
matching, so the official count rule holds. Run it under :mod:`infuser.eval.limits`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from infuser.eval.olympiad.cleanup import clean_answer
from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.numbers import AnswerParseError
from infuser.eval.olympiad.official import Prepared, judge_items, official_item, prepare
from infuser.eval.olympiad.symbolic import MAX_JUDGED_CHARS, AnswerTooLarge, numeric_value, to_sympy

_COMMAND = re.compile(r"\\[a-zA-Z]+")
_INTEGER = re.compile(r"[+-]?\d{1,400}")


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
        g_val, p_val = numeric_value(to_sympy(gold)), numeric_value(to_sympy(pred))
    except AnswerParseError:
        return False
    if g_val is None or p_val is None:
        return False
    for scale in (1.0, 100.0, 0.01):
        target = g_val * scale
        if abs(p_val - target) <= 1e-4 * max(1.0, abs(target)):
            return False
    return True


def _math_verify_item(prepared: Prepared, settings: JudgeSettings) -> Callable[[str, str, float], str | None]:
    from math_verify import parse, verify

    config = [_mv_config()]
    official = official_item(prepared)

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
    prepared = prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return prepared
    return judge_items(prepared, _math_verify_item(prepared, settings))


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

