"""The INFUSER outer loop: six stages per iteration, alternating the Generator and the Solver.

Data flows one way through an iteration::

    target set ──► Solver rollouts ──► target gradient (estimator.prepare)
    documents  ──► Generator drafts ──► parse/validate ──► Solver rollouts ──► influence scores
    pass rates (+ influence scores) ──► generator reward ──► DuGRPO ──► Generator update
    Solver rollouts on questions with 0 < pass rate < 1 ──► Dr.GRPO ──► Solver update

A generator reward that reads pass rates only (SPICE, R-Zero) skips the target stage and the
estimator; with ``solver_data: target`` the Solver trains on the target rollouts instead and the
Generator is not run.

Each stage hands the next a small typed object (:class:`~infuser.roles.solver.Answers`,
:class:`~infuser.roles.generator.Drafts`, score tensors); nothing travels in dicts except the
metrics that go to the loggers.

With several processes (see :mod:`infuser.distributed`) every process runs this loop. Each samples
and trains on its contiguous shard of the documents, of the generated questions, of the target set
and of the evaluation questions, and scores the influence of its own questions; texts, rewards and
scores are gathered, so advantages (whose statistics span the whole batch), records and metrics are
computed alike on every process, as one process computes them. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor

from infuser.artifacts import RunDirectory
from infuser.config import LoopConfig as LoopConfig  # re-exported: the configurations live in infuser.config
from infuser.console import ProgressDisplay, progress
from infuser.data.documents import DocumentSource
from infuser.data.questions import InvalidQuestion, MCQuestion
from infuser.distributed import Processes, SplitRollouts
from infuser.influence.base import InfluenceEstimator, ScoredRollouts
from infuser.roles.generator import Drafts, Generator
from infuser.roles.policy import UpdateStats
from infuser.roles.solver import Answers, Solver
from infuser.rl.generator_rewards import DraftOutcomes, GeneratorReward
from infuser.rl.rewards import RewardStats

log = logging.getLogger(__name__)

STAGES = ("target", "generate", "solve", "influence", "generator_update", "solver_update", "evaluate", "checkpoint")

HOLD_ENV = "INFUSER_HOLD_AT"


def hold_point(name: str, iteration: int) -> None:
    """Test hook: block forever at ``name`` in ``iteration`` when ``INFUSER_HOLD_AT=name@iteration``.

    The fault-injection tests (``tests/fault_injection``) SIGKILL a run while it waits here, so a
    run is interrupted at a known place (during generation, an update, a checkpoint write) rather
    than at a random moment. Names are the stages (:data:`STAGES`, entered) and
    ``checkpoint_write`` (the checkpoint is on disk under its temporary name, not yet committed).
    Unset, the hook costs one environment lookup.
    """
    if os.environ.get(HOLD_ENV) == f"{name}@{iteration}":
        print(f"infuser: holding at {name}@{iteration} ({HOLD_ENV})", file=sys.stderr, flush=True)
        threading.Event().wait()


@dataclass
class QuestionRecord:
    """One drafted question's fate, written to ``questions/iter_*.jsonl``."""

    iteration: int
    document_id: str
    text: str
    valid: bool
    reason: str = ""
    question: str = ""
    options: tuple[str, ...] = ()
    answer: str = ""
    kind: str = ""
    pass_rate: float | None = None
    influence: float | None = None  # None: no score, or a non-finite one (excluded)
    reward: float | None = 0.0  # None: excluded (a non-finite influence score)
    advantage: float = 0.0


@dataclass
class Evaluation:
    target_accuracy: float
    heldout_accuracy: float | None


@dataclass
class LoopState:
    """What, beyond weights and optimisers, a resumed run needs to continue exactly."""

    iteration: int = 0
    first_evaluation: Evaluation | None = None
    last_evaluation: Evaluation | None = None
    seconds_by_stage: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    seconds_total: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


class InfuserLoop:
    """Runs outer iterations over already-built parts; owns no model-building logic."""

    def __init__(self, fabric: L.Fabric, generator: Generator, solver: Solver, documents: DocumentSource,
                 target: list[MCQuestion], heldout: list[MCQuestion] | None, influence: InfluenceEstimator,
                 reward: GeneratorReward, config: LoopConfig, run: RunDirectory, seed: int) -> None:
        self.fabric, self.generator, self.solver = fabric, generator, solver
        self.documents, self.target, self.heldout = documents, target, heldout
        self.influence, self.reward = influence, reward
        self.config, self.run, self.seed = config, run, seed
        self.processes = Processes.of(fabric)
        self.state = LoopState()
        self._iteration = 0  # the iteration in progress (0: the first evaluation)
        self._timings: dict[str, float] = {}
        self._update_samples: list[dict] = []
        self._progress: ProgressDisplay | None = None

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str):
        if self._progress is not None:
            self._progress.set_postfix_str(name)
        hold_point(name, self._iteration)
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self._timings[name] = self._timings.get(name, 0.0) + elapsed
        self.state.seconds_by_stage[name] = self.state.seconds_by_stage.get(name, 0.0) + elapsed

    def _generators(self, iteration: int, round_: int | str) -> tuple[random.Random, torch.Generator]:
        """Per-iteration random streams: a resumed run draws exactly what the original drew."""
        key = f"{self.seed}:{iteration}:{round_}"
        return random.Random(key), torch.Generator().manual_seed(hash_seed(key))

    def _update_order(self, iteration: int, update: str) -> torch.Generator:
        """The stream that orders one update's rows, keyed by the update alone: arms of a benchmark
        that share a seed and hand an update the same rows get the same steps, whether or not
        another role updated before it (torch's global stream would differ)."""
        return self._generators(iteration, update)[1]

    # -- stages ---------------------------------------------------------------------------------
    def evaluate(self, iteration: int) -> Evaluation:
        _, sampler = self._generators(iteration, -1)
        sampling, k = self.config.eval_sampling, self.config.eval_samples
        target = float(self.solver.answer(self.target, k, sampler, sampling).rewards.mean())
        heldout = float(self.solver.answer(self.heldout, k, sampler, sampling).rewards.mean()) if self.heldout else None
        return Evaluation(target_accuracy=target, heldout_accuracy=heldout)

    def target_rollouts(self, sampler: torch.Generator) -> tuple[Answers, ScoredRollouts | None]:
        """The Solver's answers to the target set, and this process's share of the rows of questions
        with signal, normalised by the totals of all of them (``None``: no question has signal)."""
        answers = self.solver.answer(self.target, self.config.target_answers_per_question, sampler)
        rows, advantages = self._signal_rows(answers)
        if not rows:
            return answers, None
        share = answers.rollouts.scored(rows, advantages)
        return answers, dataclasses.replace(share, totals=self.solver.shared_totals(share.batch))

    def _signal_rows(self, answers: Answers) -> tuple[list[int], Tensor]:
        """Rows of questions with a pass rate strictly between 0 and 1, and Dr.GRPO advantages
        (both of every process's rows)."""
        advantages = self.solver.advantages(answers.rewards, answers.rollouts.groups)
        rates = answers.pass_rates()
        rows = [r for q, rate in enumerate(rates.tolist()) if 0.0 < rate < 1.0 for r in answers.rows_of(q)]
        return rows, advantages

    def score_questions(self, answers: Answers, has_target: bool, metrics: dict[str, float]) -> Tensor:
        """Influence per valid question; 0 for zero-signal questions and without a target gradient.

        A non-finite score stays NaN: the advantage estimators treat it as a missing reward
        (advantage 0, left out of its group's statistics), so it never reaches the weights and
        does not skew the other drafts of its document the way a substituted 0 would.
        """
        rows, advantages = self._signal_rows(answers)
        scores = torch.zeros(len(answers.questions), dtype=torch.float64)
        if not has_target or not rows:
            return scores
        n = self.config.answers_per_question
        scored = sorted({r // n for r in rows})
        candidates = self._candidates(answers, scored, advantages)
        values: list[float] = []
        for start in range(0, len(candidates), self.config.influence_batch_size):
            batch = candidates[start : start + self.config.influence_batch_size]
            values += self.influence.score(self.solver, batch).tolist()
        if not self.processes.shards_parameters:
            values = self.processes.gather(values)
        values_tensor = torch.tensor(values, dtype=torch.float64)
        bad = ~torch.isfinite(values_tensor)
        metrics["influence/non_finite"] = float(bad.sum())
        if bool(bad.any()):
            log.warning("iteration %d: %d of %d influence scores are not finite; those questions are excluded "
                        "from the Generator's advantages", self._iteration, int(bad.sum()), len(values_tensor))
            values_tensor = torch.where(bad, torch.full_like(values_tensor, math.nan), values_tensor)
        scores[torch.tensor(scored)] = values_tensor
        return scores

    def _candidates(self, answers: Answers, questions: list[int], advantages: Tensor) -> list[ScoredRollouts]:
        """What this process differentiates for each of ``questions`` (in order of ``questions``).

        Data parallel: the questions it answered, whole; the scores are gathered afterwards. Sharded
        parameters: every backward is a collective that reduces the processes' gradients, so every
        process takes a share of every question's answers (normalised by the question's totals),
        and every process ends with every score.
        """
        if not self.processes.shards_parameters:
            return [answers.rollouts.scored(answers.rows_of(q), advantages) for q in questions
                    if q in answers.rollouts.prompts]
        solver = self.solver
        wanted = [row for question in questions for row in answers.rows_of(question)]
        batch = answers.rollouts.gathered(self.processes, wanted, solver.tokenizer.pad_token_id,
                                          answers.batch.completion_ids.device)
        candidates = []
        for index, question in enumerate(questions):
            rows = answers.rows_of(question)
            share = self.processes.shard(len(rows))
            position = index * len(rows)  # the candidate's rows in ``batch``
            piece = ScoredRollouts(batch.select(list(range(position + share.start, position + share.stop))),
                                   advantages[[rows[i] for i in share]])
            candidates.append(dataclasses.replace(piece, totals=solver.shared_totals(piece.batch)))
        return candidates

    def generator_round(self, iteration: int, round_: int, has_target: bool, metrics: dict[str, float]
                        ) -> tuple[Drafts, Answers | None, list[QuestionRecord]]:
        rng, sampler = self._generators(iteration, round_)
        cfg = self.config
        with self.stage("generate"):
            documents = self.documents.take(cfg.documents_per_iteration)
            started = time.perf_counter()
            drafts = self.generator.draft(documents, cfg.questions_per_document, rng, sampler)
            metrics["throughput/generator_tokens_per_s"] = _tokens(drafts.rollouts) / (time.perf_counter() - started)
        valid_rows = drafts.valid_rows
        questions = [drafts.parsed[r] for r in valid_rows]
        answers = None
        scores = None
        rewards = torch.zeros(len(drafts.rollouts), dtype=torch.float64)
        if questions:
            with self.stage("solve"):
                started = time.perf_counter()
                answers = self.solver.answer(questions, cfg.answers_per_question, sampler)
                metrics["throughput/solver_tokens_per_s"] = _tokens(answers.rollouts) / (time.perf_counter() - started)
            if self.reward.needs_influence:
                with self.stage("influence"):
                    scores = self.score_questions(answers, has_target, metrics)
            rewards[valid_rows] = self.reward(DraftOutcomes(pass_rates=answers.pass_rates().to(torch.float64),
                                                            influence=scores))
        advantages = self.generator.advantages(rewards, drafts.rollouts.groups)
        if not cfg.freeze_generator:
            with self.stage("generator_update"):
                own = drafts.rollouts.rows
                stats = self.generator.update(drafts.batch, advantages[own.start : own.stop],
                                              self._update_order(iteration, f"generator update {round_}"))
            metrics.update(stats.as_metrics("generator"))
            self._after_update(stats, "generator", iteration)
        records = self._records(iteration, drafts, answers, scores, rewards, advantages)
        self._draft_metrics(drafts, answers, scores, rewards, metrics)
        return drafts, answers, records

    def solver_update(self, answers: Answers | None, metrics: dict[str, float]) -> None:
        if answers is None:
            metrics["solver/update_skipped"] = 1.0
            log.info("solver update skipped: no valid generated question")
            return
        rows, advantages = self._signal_rows(answers)
        if not rows:
            metrics["solver/update_skipped"] = 1.0
            log.info("solver update skipped: every question was all right or all wrong")
            return
        with self.stage("solver_update"):
            share = answers.rollouts.scored(rows, advantages)
            order = self._update_order(self._iteration, "solver update")
            stats = self.solver.update(share.batch, share.advantages, order)
        metrics.update(stats.as_metrics("solver"))
        self._after_update(stats, "solver", self._iteration)

    # -- one iteration --------------------------------------------------------------------------
    def iteration(self, iteration: int) -> dict[str, float]:
        self._iteration = iteration
        self._timings = {}
        metrics: dict[str, float] = {}
        _, sampler = self._generators(iteration, 0)
        on_target = self.config.solver_data == "target"
        target = None
        if self.reward.needs_influence or on_target:  # rewards of pass rates alone skip this stage
            with self.stage("target"):
                target_answers, target = self.target_rollouts(sampler)
                if target is None:
                    log.warning("iteration %d: every target question was all right or all wrong; no target "
                                "gradient this iteration", iteration)
                elif self.reward.needs_influence:
                    self.influence.prepare(self.solver, target)
            rates = target_answers.pass_rates()
            metrics["solver/target_reward"] = float(target_answers.rewards.mean())
            metrics["target/signal_fraction"] = float(((rates > 0) & (rates < 1)).float().mean())
        records: list[QuestionRecord] = []
        answers = target_answers if on_target else None
        for round_ in range(0 if on_target else self.config.generator_steps_per_solver_step):
            _, answers, round_records = self.generator_round(iteration, round_, target is not None, metrics)
            records += round_records
        self.solver_update(answers, metrics)
        if self.processes.is_main:
            self.run.write_questions(iteration, [r.__dict__ for r in records])
            self.run.write_samples(iteration, self._update_samples)
        self._update_samples = []
        if self.config.eval_every and iteration % self.config.eval_every == 0 or iteration == self.config.iterations:
            with self.stage("evaluate"):
                self.state.last_evaluation = self.evaluate(iteration)
            metrics["eval/target_accuracy"] = self.state.last_evaluation.target_accuracy
            if self.state.last_evaluation.heldout_accuracy is not None:
                metrics["eval/heldout_accuracy"] = self.state.last_evaluation.heldout_accuracy
        for name, seconds in self._timings.items():
            metrics[f"time/{name}"] = seconds
        return metrics

    # -- records and metrics --------------------------------------------------------------------
    def _records(self, iteration: int, drafts: Drafts, answers: Answers | None, scores: Tensor | None,
                 rewards: Tensor, advantages: Tensor) -> list[QuestionRecord]:
        records = []
        position = {row: index for index, row in enumerate(drafts.valid_rows)}
        rates = answers.pass_rates().tolist() if answers is not None else []
        for row, item in enumerate(drafts.parsed):
            document = drafts.documents[row // drafts.rollouts.num_samples]
            record = QuestionRecord(iteration=iteration, document_id=document.id,
                                    text=drafts.rollouts.texts[row][:2000],
                                    valid=isinstance(item, MCQuestion), reward=nan_to_none(float(rewards[row])),
                                    advantage=float(advantages[row]))
            if isinstance(item, InvalidQuestion):
                record.reason = item.reason
            else:
                index = position[row]
                record.question, record.options, record.answer = item.question, item.options, item.answer_letter
                record.kind = self.documents.kind_of(item)
                record.pass_rate = rates[index]
                record.influence = nan_to_none(float(scores[index])) if scores is not None else None
            records.append(record)
        return records

    def _draft_metrics(self, drafts: Drafts, answers: Answers | None, scores: Tensor | None, rewards: Tensor,
                       metrics: dict[str, float]) -> None:
        total = len(drafts.parsed)
        reasons = Counter(item.reason for item in drafts.parsed if isinstance(item, InvalidQuestion))
        metrics["generator/valid_rate"] = (total - sum(reasons.values())) / max(total, 1)
        for reason, count in reasons.items():
            metrics[f"generator/invalid/{reason}"] = count / max(total, 1)
        metrics.update(RewardStats.of(rewards, drafts.rollouts.groups).as_metrics("generator"))
        metrics.update(drafts.rollouts.completion_stats().as_metrics("generator"))
        verdicts = [self.documents.golden_is_correct(item) for item in drafts.parsed if isinstance(item, MCQuestion)]
        checked = [verdict for verdict in verdicts if verdict is not None]
        if checked:
            metrics["generator/golden_accuracy"] = sum(checked) / len(checked)
        kinds = Counter(self.documents.kind_of(item) for item in drafts.parsed if isinstance(item, MCQuestion))
        for kind, count in kinds.items():
            if kind:
                metrics[f"curriculum/{kind}"] = count / max(sum(kinds.values()), 1)
        if answers is None:
            return
        rates = answers.pass_rates()
        signal = (rates > 0) & (rates < 1)
        metrics.update(RewardStats.of(answers.rewards, answers.rollouts.groups).as_metrics("solver"))
        metrics["influence/zero_signal_fraction"] = float((~signal).float().mean())
        metrics.update(answers.rollouts.completion_stats().as_metrics("solver"))
        if scores is None:
            return
        active = scores[signal & torch.isfinite(scores)]
        if len(active):
            metrics["influence/mean"] = float(active.mean())
            metrics["influence/std"] = float(active.std()) if len(active) > 1 else 0.0

    def _after_update(self, stats: UpdateStats, role: str, iteration: int) -> None:
        """Report a skipped or partial update and keep its completion samples (each process's share,
        gathered) for the samples log."""
        _report_update(stats, role, iteration)
        samples = self.processes.gather(stats.samples)
        self._update_samples += [{"role": role, **dataclasses.asdict(sample)} for sample in samples]

    # -- the run --------------------------------------------------------------------------------
    def _replay_metrics(self) -> None:
        """After a resume, log the completed iterations' metrics again, from the checkpoint.

        The loggers of a new process start empty (Lightning's CSV logger even deletes an existing
        ``metrics.csv``), and rows written after the checkpoint belong to an iteration that is
        about to run again. The checkpoint's history is the record of what completed, so it is
        replayed: the resumed run's metrics file equals the uninterrupted run's, row for row.
        """
        self.fabric.log_dict(_evaluation_metrics(self.state.first_evaluation), step=0)
        for row in self.state.history:
            self.fabric.log_dict({k: v for k, v in row.items() if k != "iteration"}, step=int(row["iteration"]))

    def fit(self, on_iteration_end) -> LoopState:
        """Run the remaining iterations; ``on_iteration_end(iteration)`` checkpoints after each."""
        started = time.perf_counter() - self.state.seconds_total
        if self.state.first_evaluation is None:
            with self.stage("evaluate"):
                self.state.first_evaluation = self.evaluate(0)
            self.state.last_evaluation = self.state.first_evaluation
            self.fabric.log_dict(_evaluation_metrics(self.state.first_evaluation), step=0)
        else:
            self._replay_metrics()
        remaining = range(self.state.iteration + 1, self.config.iterations + 1)
        self._progress = progress(remaining, desc="infuser", unit="iter", disable=self.fabric.global_rank != 0,
                                  initial=self.state.iteration, total=self.config.iterations)
        for iteration in self._progress:
            metrics = self.iteration(iteration)
            self.state.iteration = iteration
            self.state.seconds_total = time.perf_counter() - started
            self.state.history.append({"iteration": iteration, **metrics})
            self.fabric.log_dict(metrics, step=iteration)
            with self.stage("checkpoint"):
                on_iteration_end(iteration)
        self._progress.close()
        self.state.seconds_total = time.perf_counter() - started
        return self.state


def hash_seed(key: str) -> int:
    """A stable 63-bit seed from a string (Python's ``hash`` is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & (2**63 - 1)


def _report_update(stats: UpdateStats, role: str, iteration: int) -> None:
    """Say when an update did not (fully) happen: skipped for lack of signal, or steps dropped
    because their gradient was not finite (a NaN or infinite loss never reaches the weights)."""
    if stats.non_finite_steps:
        log.warning("iteration %d: %s update dropped %d optimizer step(s) with a non-finite gradient",
                    iteration, role, stats.non_finite_steps)
    elif stats.skipped:
        log.info("iteration %d: %s update skipped (%s)", iteration, role, stats.skipped)


def _tokens(rollouts: SplitRollouts) -> int:
    """Completion tokens sampled by every process."""
    return int(rollouts.lengths.sum())


def _evaluation_metrics(evaluation: Evaluation) -> dict[str, float]:
    metrics = {"eval/target_accuracy": evaluation.target_accuracy}
    if evaluation.heldout_accuracy is not None:
        metrics["eval/heldout_accuracy"] = evaluation.heldout_accuracy
    return metrics


def nan_to_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
