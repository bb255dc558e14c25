"""The INFUSER outer loop: eight stages per iteration, alternating the Generator and the Solver.

Data flows one way through an iteration; each stage returns a typed result (:mod:`infuser.records`)
that the next stages read and from which the iteration's records and metrics are derived::

    1 target            target set ──► Solver answers ──► target gradient (estimator.prepare)
    2 generate          documents ──► Generator drafts ──► parse/validate
    3 solve             valid drafts ──► Solver answers (n per question) ──► pass rates
    4 influence         questions with 0 < pass rate < 1 ──► influence scores
    5 generator_update  pass rates (+ influence) ──► generator reward ──► DuGRPO ──► Generator update
    6 solver_update     answers to questions with 0 < pass rate < 1 (in band) ──► Dr.GRPO ──► Solver update
    7 evaluate          Solver accuracy on the target and held-out sets
    8 checkpoint        everything a resumed run needs (by ``fit``'s callback)

Pass rates are against the golden answers, or with ``solver_labels: majority_vote`` against the
Solver's own majority answer (R-Zero's pseudo-labels, :mod:`infuser.rl.pseudo_labels`), from stage
3 on; ``pass_rate_band`` narrows the questions of stage 6.

Stages 2-5 form one Generator round, repeated ``generator_steps_per_solver_step`` times. A generator
reward that reads pass rates only (SPICE, R-Zero) skips the target and influence stages; with
``solver_data: target`` the Solver trains on the target answers instead and the Generator is not run.

With several processes (see :mod:`infuser.distributed`) every process runs this loop. Each samples
and trains on its contiguous shard of the documents, of the generated questions, of the target set
and of the evaluation questions, and scores the influence of its own questions; texts, rewards and
scores are gathered, so advantages (whose statistics span the whole batch), records and metrics are
computed alike on every process, as one process computes them. Only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import lightning as L
import torch
from torch import Tensor

from infuser.artifacts import RunDirectory
from infuser.config import IdleRunError, LoopConfig
from infuser.console import ProgressDisplay, progress
from infuser.data.documents import DocumentSource, SyntheticDocuments
from infuser.data.question_sets import CanonicalAnswers, QuestionSource
from infuser.data.questions import InvalidQuestion, Question
from infuser.distributed import Processes
from infuser.influence.base import InfluenceEstimator
from infuser.records import (
    Evaluation,
    GeneratorRound,
    InfluenceScores,
    IterationResult,
    RoleUpdate,
    SkippedUpdate,
    SolverUpdate,
    TargetRollouts,
)
from infuser.rl.generator_rewards import DraftOutcomes, GeneratorReward, Representations
from infuser.rl.pseudo_labels import MajorityVote
from infuser.rl.update import PolicyUpdate, UpdateStats
from infuser.roles.generator import Generator
from infuser.roles.solver import Solver
from infuser.rollout.rows import Answers, Drafts, RolloutBatch, ScoredRollouts, SplitRollouts
from infuser.tracking import log_samples

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
class LoopState:
    """What, beyond weights and optimisers, a resumed run needs to continue exactly."""

    iteration: int = 0
    first_evaluation: Evaluation | None = None
    last_evaluation: Evaluation | None = None
    seconds_by_stage: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    seconds_total: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    idle_iterations: int = 0  # iterations in a row, up to the last completed one, in which nothing trained


@dataclass(frozen=True)
class RandomStreams:
    """The random streams of one iteration, each seeded by ``(seed, iteration, purpose)``: a resumed
    run draws exactly what the original drew, and no stage's draws depend on how many another made.

    A Generator round's streams are keyed by the round's number (the target stage shares round 0's
    sampling stream, evaluation has its own); each update orders its rows from a stream keyed by
    the update alone, so arms of a benchmark that share a seed and hand an update the same rows get
    the same steps, whether or not the other role updated before it.
    """

    seed: int
    iteration: int

    def _key(self, purpose: int | str) -> str:
        return f"{self.seed}:{self.iteration}:{purpose}"

    def shuffling(self, round_: int) -> random.Random:
        """Round ``round_``'s stream for parsing drafts (the order of their options)."""
        return random.Random(self._key(round_))

    def sampling(self, round_: int) -> torch.Generator:
        """The sampling stream of Generator round ``round_`` (round 0's also serves the target stage)."""
        return torch.Generator().manual_seed(hash_seed(self._key(round_)))

    def evaluation(self) -> torch.Generator:
        """The sampling stream of the evaluate stage."""
        return torch.Generator().manual_seed(hash_seed(self._key(-1)))  # -1: no round has that number

    def benchmarks(self) -> torch.Generator:
        """The sampling stream of ``loop.eval_benchmarks``."""
        return torch.Generator().manual_seed(hash_seed(self._key(-2)))

    def update_order(self, update: str) -> torch.Generator:
        """The stream that orders the rows of ``update`` (e.g. ``"solver update"``)."""
        return torch.Generator().manual_seed(hash_seed(self._key(update)))


class BenchmarkScores(Protocol):
    """Scores the Solver on benchmarks (``loop.eval_benchmarks``): metric name -> value."""

    def __call__(self, solver: Solver, stream: torch.Generator) -> dict[str, float]: ...


@dataclass(frozen=True)
class SignalRows:
    """The rows an update or an influence score reads: those of questions with signal (a pass rate
    strictly between 0 and 1), the Dr.GRPO advantages of every row, and the share of questions in
    ``loop.pass_rate_band`` when the rows were banded (``None`` otherwise)."""

    rows: list[int]
    advantages: Tensor
    in_band_fraction: float | None = None


@dataclass(frozen=True)
class QuestionSets:
    """The Solver's fixed question sets: the target set (whose gradient defines "useful") and the
    held-out set (never trained on: the number reported), each with the canonical completion of
    every question where its source knows them, for exact evaluation (``None`` otherwise)."""

    target: list[Question]
    heldout: list[Question] | None = None
    target_canonical: list[str] | None = None
    heldout_canonical: list[str] | None = None

    @classmethod
    def load(cls, target: QuestionSource, heldout: QuestionSource | None) -> QuestionSets:
        """Read both sets (and their canonical completions) from their sources."""
        target_questions = target.load()
        heldout_questions = heldout.load() if heldout is not None else None
        return cls(target_questions, heldout_questions, _canonical(target, target_questions),
                   _canonical(heldout, heldout_questions))


def _canonical(source: QuestionSource | None, questions: list[Question] | None) -> list[str] | None:
    if not isinstance(source, CanonicalAnswers) or not questions:
        return None
    return [source.canonical_completion(question) for question in questions]


@dataclass
class StageTiming:
    """The wall seconds of one stage's run, known once its ``with`` block has ended."""

    seconds: float = 0.0


class InfuserLoop:
    """Runs outer iterations over already-built parts; owns no model-building logic.

    Args:
        fabric: the run's Fabric (loggers, processes).
        generator, solver: the two roles.
        generator_update, solver_update: their updates (:meth:`PolicyUpdate.set_up`).
        documents: the Generator's documents.
        questions: the target and held-out sets.
        influence: the influence estimator (used when ``reward.needs_influence``).
        reward: the Generator's reward per valid draft.
        config: the schedule.
        run: the run directory (questions and samples are written there).
        seed: seeds every random stream (:class:`RandomStreams`).
        benchmarks: ``loop.eval_benchmarks``' scoring of the Solver (``fit`` builds it from
            ``infuser.eval``, which this module does not import).
        shadows: ``shadow_influence``: further estimators that score the same questions as
            ``influence``, by name, for comparison only (:meth:`shadow_scores`).
    """

    def __init__(self, *, fabric: L.Fabric, generator: Generator, solver: Solver, generator_update: PolicyUpdate,
                 solver_update: PolicyUpdate, documents: DocumentSource, questions: QuestionSets,
                 influence: InfluenceEstimator, reward: GeneratorReward, config: LoopConfig, run: RunDirectory,
                 seed: int, benchmarks: BenchmarkScores | None = None,
                 shadows: dict[str, InfluenceEstimator] | None = None) -> None:
        self.fabric, self.generator, self.solver = fabric, generator, solver
        self.updates = {"generator": generator_update, "solver": solver_update}
        self.documents, self.questions = documents, questions
        self.influence, self.reward = influence, reward
        self.config, self.run, self.seed = config, run, seed
        self.benchmarks = benchmarks
        self.shadows = dict(shadows or {})
        self.scripted_kinds = (documents.scripted_kinds(config.scripted_drafts)
                               if isinstance(documents, SyntheticDocuments) and config.scripted_drafts else None)
        self.processes = Processes.of(fabric)
        self.state = LoopState()
        self._progress: ProgressDisplay | None = None
        self._iteration_seconds: dict[str, float] = {}

    @contextmanager
    def _stage(self, name: str, iteration: int) -> Iterator[StageTiming]:
        """Time stage ``name`` (into the iteration's and the run's seconds per stage) and show it in
        the progress bar. The stage itself only returns its value; the loop keeps the clock."""
        if self._progress is not None:
            self._progress.set_postfix_str(name)
        hold_point(name, iteration)
        timing = StageTiming()
        started = time.perf_counter()
        yield timing
        timing.seconds = time.perf_counter() - started
        self._iteration_seconds[name] = self._iteration_seconds.get(name, 0.0) + timing.seconds
        self.state.seconds_by_stage[name] = self.state.seconds_by_stage.get(name, 0.0) + timing.seconds

    # -- one iteration --------------------------------------------------------------------------
    def iteration(self, iteration: int) -> IterationResult:
        """Run the stages of one outer iteration, top to bottom."""
        streams = RandomStreams(self.seed, iteration)
        self._iteration_seconds = {}
        on_target, mixed = self.config.solver_data == "target", self.config.target_mix > 0
        target_rollouts = None
        if self.reward.needs_influence or on_target or mixed:  # rewards of pass rates alone skip this stage
            with self._stage("target", iteration):
                target_rollouts = self.answer_target_set(streams)
        rounds = [self.generator_round(streams, round_, target_rollouts)
                  for round_ in range(0 if on_target else self.config.generator_steps_per_solver_step)]
        self.influence.release()  # its vectors (model-sized) are not held through the Solver's update and after
        solver = self.update_solver(target_rollouts.answers if on_target else rounds[-1].answers, streams,
                                    target_rollouts.rows if mixed else None)
        evaluation = None
        if self.config.eval_every and iteration % self.config.eval_every == 0 or iteration == self.config.iterations:
            with self._stage("evaluate", iteration):
                evaluation = self.evaluate(iteration)
        return IterationResult(iteration=iteration, target_rollouts=target_rollouts, rounds=rounds, solver=solver,
                               evaluation=evaluation, seconds=dict(self._iteration_seconds))

    def generator_round(self, streams: RandomStreams, round_: int, target_rollouts: TargetRollouts | None
                        ) -> GeneratorRound:
        """Stages 2-5: draft, answer the valid drafts, score their influence, update the Generator."""
        iteration, sampling = streams.iteration, streams.sampling(round_)
        with self._stage("generate", iteration) as generating:
            drafts = self.generate(streams.shuffling(round_), sampling)
        valid = drafts.valid_rows
        rewards = torch.zeros(len(drafts.rollouts), dtype=torch.float64)
        answers = vote = influence = shadows = solver_tokens_per_s = None
        if valid:
            with self._stage("solve", iteration) as solving:
                graded = self.solve([drafts.parsed[r] for r in valid], sampling)
            solver_tokens_per_s = _tokens(graded.rollouts) / solving.seconds
            vote = MajorityVote.of(graded)
            answers = graded.graded_against(vote.labels) if self.config.solver_labels == "majority_vote" else graded
            if self.reward.needs_influence:
                with self._stage("influence", iteration):
                    influence = self.score_influence(answers, target_rollouts, iteration)
                if self.shadows:
                    with self._stage("shadow_influence", iteration):
                        shadows = self.shadow_scores(answers, target_rollouts, iteration)
            representations = None
            if self.reward.needs_representations:  # timed as the influence stage: the round's target-relative score
                with self._stage("influence", iteration):
                    representations = Representations(self.solver.representations(answers.questions),
                                                      self.solver.representations(self.questions.target))
            rewards[valid] = self.reward(DraftOutcomes(pass_rates=answers.pass_rates().double(),
                                                       influence=influence.scores if influence is not None else None,
                                                       majority_agrees_golden=vote.agrees_golden,
                                                       representations=representations))
        advantages = self.generator.advantages(rewards, drafts.rollouts.groups)
        update = None
        if not self.config.freeze_generator:
            with self._stage("generator_update", iteration):
                own = drafts.rollouts.rows
                update = self._update("generator", drafts.batch, advantages[own.start : own.stop],
                                      streams.update_order(f"generator update {round_}"), iteration)
        return GeneratorRound(drafts=drafts, generator_tokens_per_s=_tokens(drafts.rollouts) / generating.seconds,
                              rewards=rewards, advantages=advantages, answers=answers, vote=vote,
                              solver_tokens_per_s=solver_tokens_per_s, influence=influence, shadows=shadows,
                              update=update)

    # -- the stages -----------------------------------------------------------------------------
    def answer_target_set(self, streams: RandomStreams) -> TargetRollouts:
        """Stage 1: the Solver's answers to the target set, and this process's share of the rows of
        questions with signal; when the reward reads influence, the estimator prepares its target
        side (the target gradient) from those rows."""
        answers = self.solver.answer(self.questions.target, self.config.target_answers_per_question,
                                     streams.sampling(0))
        signal = self._signal_rows(answers)
        rows = None
        if signal.rows:
            share = answers.rollouts.scored(signal.rows, signal.advantages)
            rows = ScoredRollouts(share.batch, share.advantages, self.solver.shared_totals(share.batch))
        if rows is None:
            log.warning("iteration %d: every target question was all right or all wrong; no target gradient this "
                        "iteration", streams.iteration)
        elif self.reward.needs_influence:
            self.influence.prepare(self.solver, rows)
        return TargetRollouts(answers, rows)

    def generate(self, shuffling: random.Random, sampling: torch.Generator) -> Drafts:
        """Stage 2: the next documents and the Generator's drafts of them (or the scripted arm's
        drafts, written from the documents' facts); with environment-checked golden answers, a
        draft whose golden answer is wrong is made invalid (``wrong_golden``)."""
        documents = self.documents.take(self.config.documents_per_iteration)
        k = self.config.questions_per_document
        if self.scripted_kinds is None:
            drafts = self.generator.draft(documents, k, shuffling, sampling)
        else:
            texts = [self.documents.scripted_draft(document, self.scripted_kinds, shuffling)
                     for document in documents for _ in range(k)]
            drafts = self.generator.scripted(documents, k, texts, shuffling)
        if self.config.golden_answers == "environment_checked":
            drafts.parsed = [InvalidQuestion("wrong_golden", text)
                             if not isinstance(item, InvalidQuestion) and self.documents.golden_is_correct(item) is False
                             else item for item, text in zip(drafts.parsed, drafts.rollouts.texts, strict=True)]
        return drafts

    def solve(self, questions: list[Question], sampling: torch.Generator) -> Answers:
        """Stage 3: the Solver's answers to the valid drafts, graded against their golden answers."""
        return self.solver.answer(questions, self.config.answers_per_question, sampling)

    def score_influence(self, answers: Answers, target_rollouts: TargetRollouts | None, iteration: int,
                        estimator: InfluenceEstimator | None = None) -> InfluenceScores:
        """Stage 4: influence per valid question (by ``estimator``, default the run's own, prepared in
        stage 1); 0 for zero-signal questions and without a target gradient.

        A non-finite score stays NaN: the advantage estimators treat it as a missing reward
        (advantage 0, left out of its group's statistics), so it never reaches the weights and
        does not skew the other drafts of its document the way a substituted 0 would.
        """
        signal = self._signal_rows(answers)
        scores = torch.zeros(len(answers.questions), dtype=torch.float64)
        if target_rollouts is None or target_rollouts.rows is None or not signal.rows:
            return InfluenceScores(scores, non_finite=None)
        scored = sorted({r // self.config.answers_per_question for r in signal.rows})
        candidates = answers.candidates(scored, signal.advantages, self.processes, self.solver.shared_totals,
                                        self.solver.tokenizer.pad_token_id)
        values: list[float] = []
        for start in range(0, len(candidates), self.config.influence_batch_size):
            batch = candidates[start : start + self.config.influence_batch_size]
            values += (estimator or self.influence).score(self.solver, batch).tolist()
        if not self.processes.shards_parameters:
            values = self.processes.gather(values)
        found = torch.tensor(values, dtype=torch.float64)
        bad = ~torch.isfinite(found)
        if bool(bad.any()):
            log.warning("iteration %d: %d of %d influence scores are not finite (%s); those questions are left "
                        "unscored", iteration, int(bad.sum()), len(found),
                        type(estimator or self.influence).__name__)
            found = torch.where(bad, torch.full_like(found, math.nan), found)
        scores[torch.tensor(scored)] = found
        return InfluenceScores(scores, non_finite=int(bad.sum()))

    def shadow_scores(self, answers: Answers, target_rollouts: TargetRollouts | None, iteration: int
                      ) -> dict[str, InfluenceScores]:
        """Stage 4 again, by each ``shadow_influence`` estimator: what another estimator would have
        made of the same questions at the same Solver state. The scores reach the question records
        and the ``shadow/`` metrics, never the rewards; every estimator leaves the Solver as it
        found it, and none draws from a random stream, so the run itself is the run without them."""
        scored = {}
        for name, estimator in self.shadows.items():
            if target_rollouts is not None and target_rollouts.rows is not None:
                estimator.prepare(self.solver, target_rollouts.rows)
            scored[name] = self.score_influence(answers, target_rollouts, iteration, estimator)
            estimator.release()
        return scored

    def update_solver(self, answers: Answers | None, streams: RandomStreams, target: ScoredRollouts | None = None
                      ) -> SolverUpdate:
        """Stage 6: the Solver's update on the answers to questions with signal (and a pass rate in
        ``pass_rate_band``), with ``loop.target_mix``'s share of the target set's rows with signal
        (``target``: this process's, ``None`` when no target question had signal or the mix is 0),
        or why there is none."""
        signal = self._signal_rows(answers, banded=True) if answers is not None else None
        in_band = signal.in_band_fraction if signal is not None else None
        generated_rows = signal is not None and bool(signal.rows)
        if not generated_rows and target is None:
            reason = "no valid generated question"
            if signal is not None:
                reason = "every question was all right or all wrong"
                if self.config.pass_rate_band is not None:
                    band = list(self.config.pass_rate_band)
                    reason = f"no question with signal has a pass rate in loop.pass_rate_band {band}"
            log.info("solver update skipped: %s", reason)
            return SolverUpdate(SkippedUpdate(reason), in_band)
        with self._stage("solver_update", streams.iteration):
            share = answers.rollouts.scored(signal.rows, signal.advantages) if generated_rows else None
            if target is not None:
                share = self._with_target(share, target)
            update = self._update("solver", share.batch, share.advantages, streams.update_order("solver update"),
                                  streams.iteration)
        return SolverUpdate(update, in_band)

    def evaluate(self, iteration: int) -> Evaluation:
        """Stage 7: avg@k accuracy of the Solver on the target and held-out sets, and its exact
        probability of their canonical answers where the sets have them (at ``eval_sampling``'s
        temperature)."""
        sampling = RandomStreams(self.seed, iteration).evaluation()
        config, k, sets = self.config.eval_sampling, self.config.eval_samples, self.questions
        target = float(self.solver.answer(sets.target, k, sampling, config).rewards.mean())
        heldout = float(self.solver.answer(sets.heldout, k, sampling, config).rewards.mean()) if sets.heldout else None
        exact = {name: None if completions is None else self.solver.exact_accuracy(questions, completions,
                                                                                   config.temperature)
                 for name, questions, completions in (("target", sets.target, sets.target_canonical),
                                                      ("heldout", sets.heldout, sets.heldout_canonical))}
        return Evaluation(target_accuracy=target, heldout_accuracy=heldout, target_exact=exact["target"],
                          heldout_exact=exact["heldout"])

    # -- helpers of the stages ------------------------------------------------------------------
    def _signal_rows(self, answers: Answers, banded: bool = False) -> SignalRows:
        """Rows of questions with a pass rate strictly between 0 and 1 (``banded``: and in
        ``pass_rate_band``), and Dr.GRPO advantages (both of every process's rows)."""
        advantages = self.solver.advantages(answers.rewards, answers.rollouts.groups)
        rates = answers.pass_rates().tolist()
        kept = self.config.in_band(rates) if banded else [True] * len(rates)
        rows = [r for q, (rate, keep) in enumerate(zip(rates, kept)) if keep and 0.0 < rate < 1.0
                for r in answers.rows_of(q)]
        in_band = sum(kept) / len(kept) if banded and self.config.pass_rate_band is not None else None
        return SignalRows(rows, advantages, in_band)

    def _with_target(self, generated: ScoredRollouts | None, target: ScoredRollouts) -> ScoredRollouts:
        """The generated questions' rows (if any), then the target rows with their advantages
        weighted by ``loop.target_mix``: the batch of an INFUSER + target update."""
        weighted = target.advantages * self.config.target_mix
        if generated is None:
            return ScoredRollouts(target.batch, weighted)
        return ScoredRollouts(generated.batch.joined(target.batch, self.solver.tokenizer.pad_token_id),
                              torch.cat([generated.advantages, weighted.to(generated.advantages)]))

    def _update(self, role: str, batch: RolloutBatch, advantages: Tensor, order: torch.Generator,
                iteration: int) -> RoleUpdate:
        """Run ``role``'s update; report a skipped or partial one, and gather its logged completions."""
        stats = self.updates[role](batch, advantages, order)
        _report_update(stats, role, iteration)
        return RoleUpdate(stats, self.processes.gather(stats.samples))

    # -- the run --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a checkpoint holds of the loop beyond the roles: its state and the document stream's
        position, as plain values (loadable with ``weights_only``)."""
        return {"loop": dataclasses.asdict(self.state), "documents": self.documents.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s values (read back from a checkpoint)."""
        saved = state["loop"]
        evaluations = {key: Evaluation(**saved[key]) if saved[key] else None
                       for key in ("first_evaluation", "last_evaluation")}
        self.state = LoopState(**{**saved, **evaluations})
        self.documents.load_state_dict(state["documents"])

    def _replay_metrics(self) -> None:
        """After a resume, log the completed iterations' metrics again, from the checkpoint.

        The loggers of a new process start empty (Lightning's CSV logger even deletes an existing
        ``metrics.csv``), and rows written after the checkpoint belong to an iteration that is
        about to run again. The checkpoint's history is the record of what completed, so it is
        replayed: the resumed run's metrics file equals the uninterrupted run's, row for row.
        """
        self.fabric.log_dict(self.state.first_evaluation.as_metrics(), step=0)
        for row in self.state.history:
            self.fabric.log_dict({k: v for k, v in row.items() if k != "iteration"}, step=int(row["iteration"]))

    def fit(self, on_iteration_end: Callable[[int], None]) -> LoopState:
        """Run the remaining iterations; ``on_iteration_end(iteration)`` checkpoints after each."""
        started = time.perf_counter() - self.state.seconds_total
        if self.state.first_evaluation is None:
            with self._stage("evaluate", 0):
                self.state.first_evaluation = self.evaluate(0)
            self.state.last_evaluation = self.state.first_evaluation
            self.fabric.log_dict(self.state.first_evaluation.as_metrics(), step=0)
        else:
            self._replay_metrics()
        remaining = range(self.state.iteration + 1, self.config.iterations + 1)
        self._progress = progress(remaining, desc="infuser", unit="iter", disable=self.fabric.global_rank != 0,
                              initial=self.state.iteration, total=self.config.iterations)
        for iteration in self._progress:
            result = self.iteration(iteration)
            if self.processes.is_main:
                self.run.write_questions(iteration, [record.as_row() for record in result.records(self.documents)])
                self.run.write_samples(iteration, samples := result.samples())
                log_samples(self.fabric.loggers, iteration, samples)
            metrics = result.metrics(self.documents) | self._benchmark_metrics(iteration)
            if result.evaluation is not None:
                self.state.last_evaluation = result.evaluation
            self.state.iteration = iteration
            self.state.seconds_total = time.perf_counter() - started
            self.state.history.append({"iteration": iteration, **metrics})
            self.fabric.log_dict(metrics, step=iteration)
            self.state.idle_iterations = 0 if result.trained else self.state.idle_iterations + 1
            with self._stage("checkpoint", iteration):
                on_iteration_end(iteration)
            self._check_progress(result)
        self._progress.close()
        self.state.seconds_total = time.perf_counter() - started
        return self.state


    def _benchmark_metrics(self, iteration: int) -> dict[str, float]:
        """``loop.eval_benchmarks``: the Solver's benchmark accuracies when ``iteration`` is due
        (timed as evaluation in the run's seconds per stage), from a sampling stream of their own."""
        settings = self.config.eval_benchmarks
        if self.benchmarks is None or settings is None or not settings.due(iteration, self.config.iterations):
            return {}
        with self._stage("evaluate", iteration):
            return self.benchmarks(self.solver, RandomStreams(self.seed, iteration).benchmarks())

    def _check_progress(self, result: IterationResult) -> None:
        """Say loudly when nothing has trained for ``loop.idle_iterations_limit`` iterations in a row,
        and stop the run there with ``loop.stop_when_idle`` (its last iteration is checkpointed)."""
        idle, limit = self.state.idle_iterations, self.config.idle_iterations_limit
        if not limit or idle < limit:
            return
        message = (f"nothing has trained for {idle} iterations in a row (iterations {result.iteration - idle + 1}-"
                   f"{result.iteration}); in the last one: {result.idle_reason()}")
        if self.config.stop_when_idle:
            raise IdleRunError(f"{message}; stopped (loop.stop_when_idle), --ckpt_path last resumes after iteration "
                               f"{result.iteration}")
        log.error("%s; the run goes on (loop.stop_when_idle: true stops it)", message)


def hash_seed(key: str) -> int:
    """A stable 63-bit seed from a string (Python's ``hash`` is salted per process)."""
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

