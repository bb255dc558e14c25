"""Scoring model outputs: extraction plus judging, all of an item's steps under one time limit.

:class:`Scorer` is what ``infuser eval`` and the validation metrics use. It owns a small pool of
judge workers (:mod:`infuser.eval.limits`) and runs, for every OlympiadBench output, up to three
limited calls: extract the final answer, judge it with the official rules, and (only when that
says "wrong" and math-verify could still disagree) judge it again with math-verify added. The
steps share the item's limit: each gets what the earlier ones left, and a step left with less than
:data:`MIN_STEP_SHARE` of the limit is not started. So runaway symbolic work costs about one limit
per item, not one per step. A SuperGPQA output is one limited call (letter extraction and
comparison).

An item whose work times out is scored wrong with reason ``timeout``; the worker is restarted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from infuser.answers.choice import extract_choice
from infuser.answers.extraction import MAX_OUTPUT_CHARS, Extraction, bound_text
from infuser.eval.data import SuperGPQARow
from infuser.eval.limits import LimitedPool, Outcome
from infuser.eval.olympiad.extract import extract_olympiad_answer
from infuser.eval.olympiad.gold import JudgeSettings, OlympiadGold, Verdict
from infuser.eval.olympiad.mathverify import judge_math_verify, needs_math_verify
from infuser.eval.olympiad.official import judge_official


@dataclass(frozen=True)
class JudgeConfig:
    """How outputs are judged (recorded in ``results.json``).

    Attributes:
        item_timeout_s: wall-clock limit for one item, all its steps together.
        workers: judge worker processes (raise on machines with spare cores).
        memory_limit_mb: address-space limit of each worker (0 for none).
        max_output_chars: only the last this-many characters of an output are read.
        percent_allowance: see :class:`infuser.eval.olympiad.gold.JudgeSettings`.
        use_math_verify: union the official rules with math-verify (OlympiadBench).
    """

    item_timeout_s: float = 5.0
    workers: int = 1
    memory_limit_mb: int = 4096
    max_output_chars: int = MAX_OUTPUT_CHARS
    percent_allowance: Literal["always", "when_percent"] = "always"
    use_math_verify: bool = True

    def __post_init__(self) -> None:
        if self.item_timeout_s <= 0:
            raise ValueError(f"item_timeout_s must be positive, got {self.item_timeout_s}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {self.max_output_chars}")

    @property
    def settings(self) -> JudgeSettings:
        return JudgeSettings(percent_allowance=self.percent_allowance, use_math_verify=self.use_math_verify)


@dataclass(frozen=True)
class ItemScore:
    """The outcome for one output.

    Attributes:
        extracted: the extracted answer (OlympiadBench) or letter (SuperGPQA); ``None`` if none.
        correct: judged correct.
        missed: no answer could be extracted (counted wrong, and reported as a miss).
        reason: the judge's reason (``exact``, ``numeric``, ``math_verify``, ``mismatch``,
            ``no_answer``, ``timeout``, ``error``...).
        method: the extraction rule that fired (``none`` for a miss, ``unknown`` after a timeout).
        truncated: only the tail of the output was read.
        detail: more on the reason, where there is more to say (a code run's first failure).
    """

    extracted: str | None
    correct: bool
    missed: bool
    reason: str
    method: str
    truncated: bool = False
    detail: str = ""


MIN_STEP_SHARE = 0.1
"""A step is started only with at least this fraction of the item's limit left: a step cut off
early costs a worker restart (about a second) and cannot finish anyway."""


def _failed(outcome: Outcome[Any]) -> str:
    return "timeout" if outcome.status == "timeout" else "error"


class _Budgets:
    """What is left of each item's time limit as its steps run."""

    def __init__(self, count: int, limit_s: float) -> None:
        self.limit_s = limit_s
        self.spent = [0.0] * count

    def charge(self, index: int, outcome: Outcome[Any]) -> None:
        self.spent[index] += outcome.seconds

    def left(self, index: int) -> float:
        return self.limit_s - self.spent[index]

    def can_start(self, index: int) -> bool:
        return self.left(index) >= MIN_STEP_SHARE * self.limit_s


def olympiad_extract_step(output: str, max_chars: int) -> Extraction:
    """Worker step: extraction only."""
    return extract_olympiad_answer(output, max_chars)


def olympiad_official_step(answer: str, gold: OlympiadGold, settings: JudgeSettings) -> tuple[Verdict, bool]:
    """Worker step: the official judge, and whether the math-verify step is worth running."""
    verdict = judge_official(answer, gold, settings)
    return verdict, (not verdict.correct and settings.use_math_verify and needs_math_verify(answer, gold, settings))


def olympiad_math_verify_step(answer: str, gold: OlympiadGold, settings: JudgeSettings) -> Verdict:
    """Worker step: official rules united with math-verify, item by item."""
    return judge_math_verify(answer, gold, settings)


def choice_step(output: str, options: tuple[str, ...], answer_letter: str, max_chars: int) -> tuple[Extraction, bool]:
    """Worker step: the chosen letter and whether it is the gold one."""
    extraction = extract_choice(output, options, max_chars)
    return extraction, extraction.answer is not None and extraction.answer == answer_letter


class Scorer:
    """Scores outputs against gold answers with the per-item time limit.

    The worker processes start on first use and stop on :meth:`close` (or when the scorer is
    garbage-collected). A scorer can be pickled or deep-copied (as Lightning does with metrics);
    the copy starts its own workers.
    """

    PRELOAD = ("infuser.eval.olympiad.judge:warm_up", "infuser.eval.score")

    # The steps run in the workers; class attributes so that a subclass can swap one (tests do,
    # to force a timeout). They must be module-level functions (workers import them by name).
    extract_step = staticmethod(olympiad_extract_step)
    official_step = staticmethod(olympiad_official_step)
    math_verify_step = staticmethod(olympiad_math_verify_step)
    choice_step = staticmethod(choice_step)

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()
        self._pool: LimitedPool | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "_pool": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def pool(self) -> LimitedPool:
        if self._pool is None:
            self._pool = LimitedPool(
                workers=self.config.workers,
                timeout_s=self.config.item_timeout_s,
                memory_limit_mb=self.config.memory_limit_mb,
                preload=self.PRELOAD,
            )
        return self._pool

    @property
    def restarts(self) -> int:
        """Workers killed so far (timeouts or crashes)."""
        return 0 if self._pool is None else self._pool.restarts

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- OlympiadBench ---------------------------------------------------------------------------------
    def score_olympiad(self, outputs: Sequence[str], golds: Sequence[OlympiadGold]) -> list[ItemScore]:
        """Score each output against its gold (same order, same length)."""
        if len(outputs) != len(golds):
            raise ValueError(f"{len(outputs)} outputs but {len(golds)} gold answers")
        settings = self.config.settings
        max_chars = self.config.max_output_chars
        budgets = _Budgets(len(outputs), self.config.item_timeout_s)
        bounded = [bound_text(str(o), max_chars) if o else ("", False) for o in outputs]
        extracted = self.pool.map(self.extract_step, [(text, max_chars) for text, _ in bounded])
        scores: list[ItemScore | None] = [None] * len(outputs)
        judge_jobs: list[int] = []
        for i, outcome in enumerate(extracted):
            budgets.charge(i, outcome)
            if not outcome.ok:
                scores[i] = ItemScore(None, False, False, _failed(outcome), "unknown")
                continue
            extraction = outcome.value
            assert extraction is not None
            if bounded[i][1]:
                extraction = replace(extraction, truncated=True)
                extracted[i] = replace(outcome, value=extraction)
            if extraction.answer is None:
                scores[i] = ItemScore(None, False, True, "no_answer", extraction.method, extraction.truncated)
            elif budgets.can_start(i):
                judge_jobs.append(i)
            else:
                scores[i] = ItemScore(extraction.answer, False, False, "timeout", extraction.method, extraction.truncated)

        def answer_of(i: int) -> Extraction:
            value = extracted[i].value
            assert value is not None
            return value

        official = self.pool.map(
            self.official_step, [(answer_of(i).answer, golds[i], settings) for i in judge_jobs],
            timeouts=[budgets.left(i) for i in judge_jobs],
        )
        second_jobs: list[int] = []
        for i, outcome in zip(judge_jobs, official):
            budgets.charge(i, outcome)
            extraction = answer_of(i)
            base = ItemScore(extraction.answer, False, False, "", extraction.method, extraction.truncated)
            if outcome.ok:
                assert outcome.value is not None
                verdict, worth_more = outcome.value
                scores[i] = replace(base, correct=verdict.correct, reason=verdict.reason)
                if worth_more and budgets.can_start(i):
                    second_jobs.append(i)
            else:
                scores[i] = replace(base, reason=_failed(outcome))
                if settings.use_math_verify and budgets.can_start(i):
                    second_jobs.append(i)

        second = self.pool.map(
            self.math_verify_step, [(answer_of(i).answer, golds[i], settings) for i in second_jobs],
            timeouts=[budgets.left(i) for i in second_jobs],
        )
        for i, outcome in zip(second_jobs, second):
            current = scores[i]
            assert current is not None
            if outcome.ok and outcome.value is not None and outcome.value.correct:
                scores[i] = replace(current, correct=True, reason=outcome.value.reason)
            elif not outcome.ok and current.reason in ("timeout", "error"):
                scores[i] = replace(current, reason=_failed(outcome))
        return [s for s in scores if s is not None]

    # -- SuperGPQA ---------------------------------------------------------------------------------------
    def score_choice(self, outputs: Sequence[str], rows: Sequence[SuperGPQARow]) -> list[ItemScore]:
        """Score each multiple-choice output against its row's ``answer_letter``."""
        if len(outputs) != len(rows):
            raise ValueError(f"{len(outputs)} outputs but {len(rows)} rows")
        max_chars = self.config.max_output_chars
        bounded = [bound_text(str(o), max_chars) if o else ("", False) for o in outputs]
        results = self.pool.map(
            self.choice_step, [(text, tuple(r.options), r.answer_letter, max_chars) for (text, _), r in zip(bounded, rows)]
        )
        scores: list[ItemScore] = []
        for outcome, (_, cut) in zip(results, bounded):
            if not outcome.ok or outcome.value is None:
                scores.append(ItemScore(None, False, False, _failed(outcome), "unknown", cut))
                continue
            extraction, correct = outcome.value
            if cut:
                extraction = replace(extraction, truncated=True)
            if extraction.answer is None:
                scores.append(ItemScore(None, False, True, "no_answer", extraction.method, extraction.truncated))
            else:
                reason = "match" if correct else "mismatch"
                scores.append(ItemScore(extraction.answer, correct, False, reason, extraction.method, extraction.truncated))
        return scores
