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

from infuser.answers.boxes import balanced_braces
from infuser.eval.olympiad.cleanup import Cleaned, clean_answer
from infuser.eval.olympiad.equality import official_pair
from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.numbers import PercentRule
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


def _percent_rule(gold: Cleaned, pred: Cleaned, unit: str | None, settings: JudgeSettings) -> PercentRule:
    """Where the percentage allowance applies: to any plain number when a percent sign (on either
    side, or in the unit) says the answer is a percentage; otherwise, with ``always``, to decimal
    literals that carried no degree mark, as the official judge does (it reads ``45^{\\circ}`` and
    ``\\frac{4}{3}`` with no allowance, so ``4500`` and ``133.33`` stay wrong)."""
    if gold.percent or pred.percent or (unit and ("%" in unit or "percent" in unit.lower())):
        return "numbers"
    if settings.percent_allowance == "always" and not (gold.degrees or pred.degrees):
        return "decimals"
    return "none"


def _tolerances(gold: OlympiadGold, settings: JudgeSettings, count: int) -> list[float]:
    """One tolerance per gold item: the row's ``error`` (one value for all items, or one per
    item), except that ``Tuple`` rows always get the default, as in the official judge."""
    given = () if "Tuple" in gold.answer_type else gold.tolerances
    tols = [settings.default_tolerance if t is None else t for t in given] or [settings.default_tolerance]
    return tols if len(tols) == count else [tols[0]] * count


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
    percent: PercentRule
    gold_percent: bool
    pred_percent: bool


def prepare(answer: str | None, gold: OlympiadGold, settings: JudgeSettings) -> Verdict | Prepared:
    """Clean and split both sides; a :class:`Verdict` when that already decides (no answer, too
    long, unbalanced braces, identical after clean-up, different counts).

    Unbalanced braces are refused before any parser sees the answer: ``\\boxed{5`` is cut off,
    and a parser that wraps it in its own ``\\boxed{...}`` would close it.
    """
    if answer is None or not answer.strip():
        return Verdict(False, "no_answer")
    if len(answer) > MAX_JUDGED_CHARS:
        return Verdict(False, "too_long")
    if not balanced_braces(answer):
        return Verdict(False, "unbalanced")
    g_clean = clean_answer(gold.text, gold.unit)
    p_clean = clean_answer(answer, gold.unit)
    if g_clean.text == p_clean.text:
        return Verdict(True, "exact")
    percent = _percent_rule(g_clean, p_clean, gold.unit, settings)
    g_items = _items(g_clean.text, join_thousands=not gold.is_multiple_answer)
    p_items = _items(p_clean.text, join_thousands=len(g_items) == 1)
    tols = _tolerances(gold, settings, len(g_items))
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
