"""What one outer iteration leaves behind: its stages' typed results, the question records written to
``questions/iter_N.jsonl``, and the metrics the loggers receive.

:class:`~infuser.loop.InfuserLoop` runs the stages and returns an :class:`IterationResult`; the
metrics are derived from it here, in one place, instead of being collected in a dictionary that
every stage writes into. With several processes every field below is the same on every process
(texts, rewards, scores and update statistics are gathered or reduced), so every process derives
the same metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor

from infuser.data.documents import DocumentSource
from infuser.data.questions import InvalidQuestion
from infuser.influence.agreement import spearman, top_choice_agreement
from infuser.rl.pseudo_labels import MajorityVote
from infuser.rl.rewards import RewardStats
from infuser.rl.update import CompletionSample, UpdateStats
from infuser.rollout.rows import Answers, Drafts, ScoredRollouts


@dataclass
class Evaluation:
    """Accuracy of the Solver on the target set and on the held-out set (``None`` without one).

    ``*_accuracy``: sampled (avg@k). ``*_exact``: the mean teacher-forced probability of each
    question's canonical answer, free of sampling noise; ``None`` when the set has no canonical
    answers (:class:`~infuser.data.question_sets.CanonicalAnswers`).
    """

    target_accuracy: float
    heldout_accuracy: float | None
    target_exact: float | None = None
    heldout_exact: float | None = None

    def as_metrics(self) -> dict[str, float]:
        metrics = {"eval/target_accuracy": self.target_accuracy, "eval/heldout_accuracy": self.heldout_accuracy,
                   "eval/target_exact": self.target_exact, "eval/heldout_exact": self.heldout_exact}
        return {name: value for name, value in metrics.items() if value is not None}


@dataclass(frozen=True)
class TargetRollouts:
    """The target stage: the Solver's answers to the target set, and this process's share of the rows
    of questions with signal (0 < pass rate < 1), normalised by the totals of all of them; ``rows``
    is ``None`` when no question has signal (no target gradient this iteration)."""

    answers: Answers
    rows: ScoredRollouts | None

    def as_metrics(self) -> dict[str, float]:
        rates = self.answers.pass_rates()
        return {"solver/target_reward": float(self.answers.rewards.mean()),
                "target/signal_fraction": float(((rates > 0) & (rates < 1)).float().mean())}


@dataclass(frozen=True)
class RoleUpdate:
    """An update stage that ran: the update's statistics and the completions it logged (every
    process's). It may still have taken no optimizer step (``stats.skipped`` says why)."""

    stats: UpdateStats
    samples: list[CompletionSample]


@dataclass(frozen=True)
class SkippedUpdate:
    """An update stage that did not run, and why (no valid question, none with signal, none in band)."""

    reason: str


@dataclass(frozen=True)
class SolverUpdate:
    """The Solver's update stage: its outcome, and the share of its questions in
    ``loop.pass_rate_band`` (``None`` without a band, or without questions)."""

    outcome: RoleUpdate | SkippedUpdate
    in_band_fraction: float | None = None


@dataclass(frozen=True)
class InfluenceScores:
    """The influence stage: one score per valid question (0 without signal or target gradient; NaN:
    a non-finite score, excluded from the advantages), and how many were not finite (``None`` when
    nothing was scored)."""

    scores: Tensor
    non_finite: int | None


@dataclass(frozen=True)
class GeneratorRound:
    """One round of the Generator: its drafts (with the sampling throughput), the Solver's answers to
    the valid ones (graded against ``loop.solver_labels``) and their majority vote, their influence,
    the Generator's rewards and advantages per draft, its update (``None``: frozen).

    Without a valid draft there are no answers, vote or influence, and every reward is 0. ``shadows``:
    the same questions scored by the ``shadow_influence`` estimators, by name (``None`` without them)."""

    drafts: Drafts
    generator_tokens_per_s: float
    rewards: Tensor
    advantages: Tensor
    answers: Answers | None = None
    vote: MajorityVote | None = None
    solver_tokens_per_s: float | None = None
    influence: InfluenceScores | None = None
    shadows: dict[str, InfluenceScores] | None = None
    update: RoleUpdate | None = None


@dataclass(frozen=True)
class IterationResult:
    """Everything one outer iteration produced, stage by stage, and the wall seconds of each stage."""

    iteration: int
    target_rollouts: TargetRollouts | None
    rounds: list[GeneratorRound]
    solver: SolverUpdate
    evaluation: Evaluation | None
    seconds: dict[str, float] = field(default_factory=dict)

    def _updates(self) -> list[tuple[str, RoleUpdate]]:
        """The updates that ran, role by role in the order they ran."""
        updates = [("generator", round_.update) for round_ in self.rounds] + [("solver", self.solver.outcome)]
        return [(role, update) for role, update in updates if isinstance(update, RoleUpdate)]

    @property
    def trained(self) -> bool:
        """Whether either role took an optimizer step."""
        return any(update.stats.optimizer_steps > 0 for _, update in self._updates())

    def idle_reason(self) -> str:
        """Why neither role trained in this iteration, stage by stage ("" when one did)."""
        if self.trained:
            return ""
        drafts = sum(len(round_.drafts.parsed) for round_ in self.rounds)
        valid = sum(len(round_.drafts.valid_rows) for round_ in self.rounds)
        if not self.rounds or all(round_.update is None for round_ in self.rounds):
            generator = "not updated (frozen, or the Solver trains on the target set)"
        else:
            generator = f"no draft had a non-zero advantage ({valid} of {drafts} drafts valid)"
        outcome = self.solver.outcome
        solver = outcome.reason if isinstance(outcome, SkippedUpdate) else "no optimizer step"
        return f"Generator: {generator}; Solver: {solver}"

    def metrics(self, documents: DocumentSource) -> dict[str, float]:
        """The metrics logged for this iteration. Of several Generator rounds, the last one's."""
        metrics = self.target_rollouts.as_metrics() if self.target_rollouts is not None else {}
        for round_ in self.rounds:
            metrics.update(_round_metrics(round_, documents))
        if isinstance(self.solver.outcome, RoleUpdate):
            metrics.update(self.solver.outcome.stats.as_metrics("solver"))
        else:
            metrics["solver/update_skipped"] = 1.0
        if self.solver.in_band_fraction is not None:
            metrics["solver/in_band_fraction"] = self.solver.in_band_fraction
        if self.evaluation is not None:
            metrics.update(self.evaluation.as_metrics())
        metrics.update({f"time/{name}": seconds for name, seconds in self.seconds.items()})
        return metrics

    def records(self, documents: DocumentSource) -> list[QuestionRecord]:
        return [record for round_ in self.rounds for record in question_records(self.iteration, round_, documents)]

    def samples(self) -> list[dict]:
        """The completions the updates logged, role by role in the order they ran."""
        return [{"role": role, **sample.__dict__} for role, update in self._updates() for sample in update.samples]


@dataclass
class QuestionRecord:
    """One drafted question's fate, written to ``questions/iter_*.jsonl``."""

    iteration: int
    document_id: str
    text: str
    valid: bool
    reason: str = ""
    question: str = ""
    options: tuple[str, ...] = ()  # a multiple-choice question's
    answer: str = ""  # the golden answer: an option's letter, a programming problem's reference solution
    tests: tuple[str, ...] = ()  # a programming problem's
    kind: str = ""
    pass_rate: float | None = None  # against loop.solver_labels (the majority's share under majority_vote)
    majority: str = ""  # the Solver's most frequent answer (its pseudo-label under majority_vote)
    influence: float | None = None  # None: no score, or a non-finite one (excluded)
    reward: float | None = 0.0  # None: excluded (a non-finite influence score)
    advantage: float = 0.0
    shadow_influence: dict[str, float | None] | None = None  # by shadow estimator; only with shadow_influence

    def as_row(self) -> dict:
        """The JSON line; ``shadow_influence`` only where a run has shadow estimators, ``tests``
        only for questions that have them."""
        row = dict(self.__dict__)
        if row["shadow_influence"] is None:
            del row["shadow_influence"]
        if not row["tests"]:
            del row["tests"]
        return row


def question_records(iteration: int, round_: GeneratorRound, documents: DocumentSource) -> list[QuestionRecord]:
    drafts, answers = round_.drafts, round_.answers
    scores = round_.influence.scores if round_.influence is not None else None
    records = []
    position = {row: index for index, row in enumerate(drafts.valid_rows)}
    rates = answers.pass_rates().tolist() if answers is not None else []
    for row, item in enumerate(drafts.parsed):
        document = drafts.documents[row // drafts.rollouts.num_samples]
        record = QuestionRecord(iteration=iteration, document_id=document.id, text=drafts.rollouts.texts[row][:2000],
                                valid=not isinstance(item, InvalidQuestion), reward=nan_to_none(float(round_.rewards[row])),
                                advantage=float(round_.advantages[row]))
        if isinstance(item, InvalidQuestion):
            record.reason = item.reason
        else:
            index = position[row]
            for name, value in item.record_fields().items():
                setattr(record, name, value)
            record.kind = documents.question_kind(item)
            record.pass_rate = rates[index]
            record.majority = round_.vote.labels[index] if round_.vote is not None else ""
            record.influence = nan_to_none(float(scores[index])) if scores is not None else None
            if round_.shadows is not None:
                record.shadow_influence = {name: nan_to_none(float(shadow.scores[index]))
                                           for name, shadow in round_.shadows.items()}
        records.append(record)
    return records


def _round_metrics(round_: GeneratorRound, documents: DocumentSource) -> dict[str, float]:
    drafts, answers = round_.drafts, round_.answers
    metrics = {"throughput/generator_tokens_per_s": round_.generator_tokens_per_s}
    if round_.solver_tokens_per_s is not None:
        metrics["throughput/solver_tokens_per_s"] = round_.solver_tokens_per_s
    if round_.influence is not None and round_.influence.non_finite is not None:
        metrics["influence/non_finite"] = float(round_.influence.non_finite)
    if round_.update is not None:
        metrics.update(round_.update.stats.as_metrics("generator"))
    total = len(drafts.parsed)
    reasons = Counter(item.reason for item in drafts.parsed if isinstance(item, InvalidQuestion))
    metrics["generator/valid_rate"] = (total - sum(reasons.values())) / max(total, 1)
    for reason, count in reasons.items():
        metrics[f"generator/invalid/{reason}"] = count / max(total, 1)
    metrics.update(RewardStats.of(round_.rewards, drafts.rollouts.groups).as_metrics("generator"))
    metrics.update(drafts.rollouts.completion_stats().as_metrics("generator"))
    verdicts = [documents.golden_is_correct(item) for item in drafts.parsed
                if not isinstance(item, InvalidQuestion)]
    checked = [verdict for verdict in verdicts if verdict is not None]
    if checked:
        metrics["generator/golden_accuracy"] = sum(checked) / len(checked)
    kinds = Counter(documents.question_kind(item) for item in drafts.parsed if not isinstance(item, InvalidQuestion))
    for kind, count in kinds.items():
        if kind:
            metrics[f"curriculum/{kind}"] = count / max(sum(kinds.values()), 1)
    if answers is None:
        return metrics
    rates = answers.pass_rates()
    signal = (rates > 0) & (rates < 1)
    metrics.update(RewardStats.of(answers.rewards, answers.rollouts.groups).as_metrics("solver"))
    metrics["influence/zero_signal_fraction"] = float((~signal).float().mean())
    if round_.vote is not None:
        metrics["solver/majority_agrees_golden"] = float(round_.vote.agrees_golden.float().mean())
        verdicts = [v for v in round_.vote.correct(answers, documents.golden_is_correct) if v is not None]
        if verdicts:
            metrics["solver/majority_correct"] = sum(verdicts) / len(verdicts)
    metrics.update(answers.rollouts.completion_stats().as_metrics("solver"))
    if round_.influence is None:
        return metrics
    scores = round_.influence.scores
    active = scores[signal & scores.isfinite()]
    if len(active):
        metrics["influence/mean"] = float(active.mean())
        metrics["influence/std"] = float(active.std()) if len(active) > 1 else 0.0
    if round_.shadows:
        metrics.update(_shadow_metrics(round_, signal, documents))
    return metrics


def _shadow_metrics(round_: GeneratorRound, signal: Tensor, documents: DocumentSource) -> dict[str, float]:
    """``shadow/<name>/spearman`` and ``.../top_choice_agreement`` (:mod:`infuser.influence.agreement`)
    against the reward's own scores, over the questions with signal that both scored; the mean score
    of each question kind, by the reward's estimator (``shadow/influence/kind/<kind>``) and by each
    shadow (``shadow/<name>/kind/<kind>``): whether they would prefer other kinds."""
    assert round_.influence is not None and round_.shadows is not None and round_.answers is not None
    drafts, own = round_.drafts, round_.influence.scores
    documents_of = torch.tensor([row // drafts.rollouts.num_samples for row in drafts.valid_rows])
    kinds = [documents.question_kind(question) for question in round_.answers.questions]
    metrics = _kind_means("shadow/influence", own, signal & own.isfinite(), kinds)
    for name, shadow in round_.shadows.items():
        both = signal & own.isfinite() & shadow.scores.isfinite()
        if int(both.sum()) > 1:
            metrics[f"shadow/{name}/spearman"] = spearman(own[both], shadow.scores[both])
            metrics[f"shadow/{name}/top_choice_agreement"] = top_choice_agreement(
                own[both], shadow.scores[both], documents_of[both].tolist())
        metrics.update(_kind_means(f"shadow/{name}", shadow.scores, signal & shadow.scores.isfinite(), kinds))
    return {name: value for name, value in metrics.items() if math.isfinite(value)}


def _kind_means(prefix: str, scores: Tensor, kept: Tensor, kinds: list[str]) -> dict[str, float]:
    means = {}
    for kind in sorted({kind for kind in kinds if kind}):
        chosen = kept & torch.tensor([k == kind for k in kinds])
        if bool(chosen.any()):
            means[f"{prefix}/kind/{kind}"] = float(scores[chosen].mean())
    return means


def nan_to_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
