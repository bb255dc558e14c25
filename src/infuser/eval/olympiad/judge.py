"""The OlympiadBench union judge: the official rules, then math-verify where they say "wrong".

An answer is correct when either judge accepts it:

(a) **official semantics** (:mod:`~infuser.eval.olympiad.official`, re-implemented from the
    OlympiadBench rules, not copied): LaTeX clean-up, several answers matched one to one in any
    order, ``\\pm`` for both signs, numbers within the row's tolerance (and the percentage
    allowance), intervals, tuples, equations and expressions compared structurally and with sympy;
(b) **math-verify** (:mod:`~infuser.eval.olympiad.mathverify`), per item pair.

Symbolic work can be slow on adversarial input, so production scoring
(:class:`infuser.eval.score.Scorer`) runs each stage in :mod:`infuser.eval.limits` workers with a
time limit; :func:`judge_olympiad` runs both in this process, for tests and notebooks.
"""

from __future__ import annotations

from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.mathverify import judge_math_verify, needs_math_verify
from infuser.eval.olympiad.official import judge_official


def judge_olympiad(answer: str | None, gold: OlympiadGold, settings: JudgeSettings = JudgeSettings()) -> Verdict:
    """The union judge in this process: :func:`judge_official`, then :func:`judge_math_verify`.

    Convenient for tests and notebooks; production scoring goes through
    :class:`infuser.eval.score.Scorer`, which runs each stage under the time limit.
    """
    verdict = judge_official(answer, gold, settings)
    if verdict.correct or not settings.use_math_verify or not needs_math_verify(answer, gold, settings):
        return verdict
    second = judge_math_verify(answer, gold, settings)
    return second if second.correct else verdict


def warm_up() -> None:
    """Import and exercise the parsers once (called when a judge worker starts)."""
    judge_olympiad("\\frac{1}{2}", OlympiadGold(("0.5",)))
    judge_olympiad("x+1", OlympiadGold(("1+x",), "Expression"))
    judge_math_verify("0.5", OlympiadGold(("\\frac{1}{2}",)))
