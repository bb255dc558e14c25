"""The official OlympiadBench judge at the level of whole answers.

Both sides are cleaned, split into items at top-level commas (``\\pm`` standing for both signs),
and matched one to one in any order; each pair is compared by
:func:`~infuser.eval.olympiad.equality.official_pair`. The math-verify stage
(:mod:`~infuser.eval.olympiad.mathverify`) reuses the preparation and the matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from infuser.eval.olympiad.cleanup import clean_answer
from infuser.eval.olympiad.equality import official_pair
from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.structure import outer_group, split_top_level
from infuser.eval.olympiad.symbolic import MAX_JUDGED_CHARS

MAX_ITEMS = 64
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


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
    group = outer_group(text)
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


@dataclass(frozen=True)
class Prepared:
    """Both sides cleaned and split into items, ready for one-to-one matching."""

    gold_items: list[str]
    pred_items: list[str]
    tolerances: list[float]
    percent: bool
    gold_percent: bool
    pred_percent: bool


def prepare(answer: str | None, gold: OlympiadGold, settings: JudgeSettings) -> Verdict | Prepared:
    """Clean and split both sides; a :class:`Verdict` when that already decides (no answer, too
    long, identical after clean-up, different counts)."""
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
    return Prepared(g_items, p_items, tols, percent, g_clean.percent, p_clean.percent)


def judge_items(prepared: Prepared, item_equal: Callable[[str, str, float], str | None]) -> Verdict:
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


def official_item(prepared: Prepared) -> Callable[[str, str, float], str | None]:
    """The official pair comparison with this answer's percentage setting."""
    def equal(g: str, p: str, tol: float) -> str | None:
        return official_pair(g, p, tol, prepared.percent)

    return equal


def judge_official(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """Judge ``answer`` (an extracted final answer) with the official OlympiadBench semantics.

    Never raises: failures to parse count as "not equal".
    """
    prepared = prepare(answer, gold, settings)
    if isinstance(prepared, Verdict):
        return prepared
    return judge_items(prepared, official_item(prepared))
