"""The ground truth of ``infuser bench influence``: what one real Solver step on each candidate
does to the target.

A toy Solver takes its own trajectory of real RL updates (:func:`trajectory`) and is measured at
several points of it. At each, fresh target and candidate rollouts are drawn, and for every
candidate the Solver takes one real update on that candidate alone (its own ``update``: clipping,
AdamW with momentum and weight decay), then is restored. Two effects are measured after the step:
the target objective (the clipped policy loss on the *fixed* target rollouts with importance
ratios to the pre-step policy, whose on-policy gradient is ``g_T``) and the target set's exact
accuracy (the mean teacher-forced probability of each target question's canonical answer, as the
loop's exact evaluation scores it). Each is taken relative to the step AdamW takes with a zero
gradient (momentum and weight decay alone), so that a positive effect means "this candidate
helped" and the common part, which changes no rank, is gone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor

from infuser.config import RoleConfig
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.influence.agreement import spearman
from infuser.rl.loss import policy_loss
from infuser.rl.update import PolicyUpdate
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps
from infuser.rollout.rows import Answers, BatchTotals, RolloutBatch, ScoredRollouts
from infuser.rollout.scoring import teacher_forced_batch
from infuser.toy.world import ArithmeticWorld


@dataclass
class StepDiagnostics:
    """What shapes the real AdamW steps of one measurement (means over its candidates).

    Attributes:
        candidate_share_of_v: ``sum((1 - beta2) g_q**2) / sum(v')``: how much of the second moment
            the step divides by is the candidate's own (clipped) gradient.
        sign_likeness: cosine between ``|g_q| / (sqrt(v'_hat) + eps)`` and the all-ones vector:
            1 when every coordinate moves by the same amount (a ``sign(g)`` step).
        clipped: fraction of candidates whose gradient norm exceeded ``grad_clip``.
        null_share: ``|L_T(before) - L_T(null step)|`` over the mean ``|effect|``: the size of the
            common momentum and weight-decay part of every step against the candidates' parts.
        effect_retest: Spearman of the candidates' loss effects measured on the target rollouts and
            on a second draw of them (the same steps, measured twice): how reliable the ground
            truth itself is, the most an estimator's rank correlation with it can be expected to
            reach. (The accuracy effect reads no sampled rollouts: measured again, it is the same.)
    """

    candidate_share_of_v: float
    sign_likeness: float
    clipped: float
    null_share: float
    effect_retest: float


# -- the settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How each measurement is drawn: the same for every Solver variant and seed."""

    states: tuple[int, ...]  # ascending
    questions_per_step: int
    target_questions: int
    candidate_questions: int
    answers_per_question: int
    further_learning_rates: tuple[float, ...]


@dataclass
class Effects:
    """What one real step on each candidate does, relative to the null step."""

    loss: Tensor  # L_T(null) - L_T(step on q)
    accuracy: Tensor  # A_T(step on q) - A_T(null)
    at: dict[float, Tensor]  # loss effects at the further learning rates
    diagnostics: StepDiagnostics


@dataclass
class Setting:
    """One Solver variant at one (seed, state) and everything measured on it once, shared by its rows."""

    seed: int
    state: int
    solver: Solver
    target: ScoredRollouts
    candidates: dict[int, ScoredRollouts]  # by candidate question index
    retest_target: ScoredRollouts  # a second draw of the target rollouts
    retest_candidates: dict[int, ScoredRollouts]  # a second draw of the answers (questions with signal in both)
    effects: Effects


def trajectory(fabric: L.Fabric, config: RoleConfig, world: ArithmeticWorld, plan: Plan, seed: int) -> Iterator[Setting]:
    """One Solver's run of real RL updates, measured at every state of ``plan`` on the way."""
    torch.manual_seed(seed)
    solver = Solver(config, PromptTemplates())
    update = PolicyUpdate.set_up(fabric, solver)
    sampler = torch.Generator().manual_seed(seed)  # the updates' own stream: measuring draws from others
    taken = 0
    for state in plan.states:
        for step in range(taken, state):
            questions = world.question_set(f"bench-warmup-{step}", plan.questions_per_step, seed)
            answers = solver.answer(questions, plan.answers_per_question, sampler)
            update(answers.batch, solver.advantages(answers.rewards, answers.batch.prompt_index))
        taken = state
        yield _setting(solver, update, world, plan, seed, state)


def _setting(solver: Solver, update: PolicyUpdate, world: ArithmeticWorld, plan: Plan, seed: int, state: int) -> Setting:
    """Fresh target and candidate rollouts (and their second draws) of the Solver as it is, and the effects."""
    sampler = torch.Generator().manual_seed(1_000_003 * seed + state)
    n = plan.answers_per_question
    target_questions = world.question_set("target", plan.target_questions, seed)
    pool = world.question_set("bench-candidates", plan.candidate_questions, seed)
    target, candidates = _target(solver, target_questions, n, sampler), _candidates(solver, pool, n, sampler)
    retest_target, retest = _target(solver, target_questions, n, sampler), _candidates(solver, pool, n, sampler)
    if target is None or retest_target is None or len(candidates) < 3:
        raise RuntimeError(f"bench influence: the Solver ({solver.config.model.name_or_path}, seed {seed}, after "
                           f"{state} updates) leaves no target question or fewer than 3 candidate questions with "
                           "0 < pass rate < 1; use a better-trained model or more questions")
    canonical = canonical_answers(solver, world, target_questions)
    effects = _effects(solver, update, (target, retest_target), canonical, list(candidates.values()),
                       plan.further_learning_rates)
    return Setting(seed, state, solver, target, candidates, retest_target,
                   {q: rollouts for q, rollouts in retest.items() if q in candidates}, effects)


def _signal(solver: Solver, questions: list[MCQuestion], n: int, sampler: torch.Generator
            ) -> tuple[Answers, dict[int, list[int]]]:
    """The Solver's answers, and the rows of each question it sometimes gets right, by question index."""
    answers = solver.answer(questions, n, sampler)
    rates = answers.pass_rates().tolist()
    return answers, {q: answers.rows_of(q) for q, rate in enumerate(rates) if 0.0 < rate < 1.0}


def _target(solver: Solver, questions: list[MCQuestion], n: int, sampler: torch.Generator) -> ScoredRollouts | None:
    """The target rollouts: every question with signal together (``None`` without any)."""
    answers, rows = _signal(solver, questions, n, sampler)
    return _rollouts(solver, answers, [r for group in rows.values() for r in group]) if rows else None


def _candidates(solver: Solver, questions: list[MCQuestion], n: int, sampler: torch.Generator
                ) -> dict[int, ScoredRollouts]:
    """One candidate per question with signal."""
    answers, rows = _signal(solver, questions, n, sampler)
    return {q: _rollouts(solver, answers, group) for q, group in rows.items()}


def _rollouts(solver: Solver, answers: Answers, rows: list[int]) -> ScoredRollouts:
    """``rows`` of ``answers`` with Dr.GRPO advantages (groups: questions)."""
    advantages = solver.advantages(answers.rewards, answers.batch.prompt_index)
    return ScoredRollouts(answers.batch.select(rows), advantages[rows])


def canonical_answers(solver: Solver, world: ArithmeticWorld, questions: list[MCQuestion]) -> RolloutBatch:
    """Each question's Solver prompt with its canonical answer (and EOS) as the completion, as the
    loop's exact evaluation scores it."""
    return teacher_forced_batch(solver.tokenizer, [solver.prompts.for_solver(question) for question in questions],
                                [world.canonical_completion(question) for question in questions],
                                solver.trainable_parameters()[0].device)


# -- ground truth --------------------------------------------------------------------------------


def target_objective(solver: Solver, target: ScoredRollouts, old_logps: Tensor) -> float:
    """The target's clipped policy loss with importance ratios to ``old_logps`` (no KL, no entropy).

    Its gradient at the pre-step policy is ``g_T``. Its normalisers scale it by a constant, which
    changes neither ranks nor signs.
    """
    batch = target.batch
    mask = solver.loss_mask(batch)
    with torch.no_grad():
        logps, _ = completion_logps(solver.model, batch, solver.config.sampling.temperature)
    totals = BatchTotals(sequences=len(batch), tokens=int(mask.sum()),
                         max_completion_length=batch.completion_ids.size(1))
    config = dataclasses.replace(solver.config.update.loss, beta=0.0, entropy_coef=0.0)
    return float(policy_loss(logps.double(), old_logps.double(), target.advantages.double(), mask, config, totals).loss)


def canonical_accuracy(solver: Solver, canonical: RolloutBatch) -> float:
    """The target's exact accuracy: the mean probability of sampling each question's canonical answer."""
    with torch.no_grad():
        logps, _ = completion_logps(solver.model, canonical, solver.config.sampling.temperature)
    return float((logps.double() * canonical.completion_mask).sum(-1).exp().mean())


class _Snapshot:
    """The Solver's trainable parameters and optimizer state, to return to after each trial step."""

    def __init__(self, solver: Solver) -> None:
        self.optimizer = solver.optimizer_state()
        self.parameters = solver.trainable_parameters()
        self._values = [p.detach().clone() for p in self.parameters]
        self._state = copy.deepcopy(self.optimizer.state_dict())
        self.second_moment = self.flat_second_moment()

    def restore(self, lr: float | None = None) -> None:
        """Back to the snapshot; with ``lr``, the next step takes that learning rate."""
        with torch.no_grad():
            for p, value in zip(self.parameters, self._values):
                p.copy_(value)
        self.optimizer.load_state_dict(copy.deepcopy(self._state))  # load_state_dict may alias its input
        for group in self.optimizer.param_groups if lr is not None else ():
            group["lr"] = lr

    def flat_second_moment(self) -> Tensor:
        """AdamW's ``exp_avg_sq`` over the trainable parameters, flat, float64 (zeros before a first step)."""
        return torch.cat([self.optimizer.state.get(p, {}).get("exp_avg_sq", torch.zeros_like(p)).double().flatten()
                          for p in self.parameters])


def _effects(solver: Solver, update: PolicyUpdate, targets: tuple[ScoredRollouts, ScoredRollouts],
             canonical: RolloutBatch, candidates: Sequence[ScoredRollouts], further_learning_rates: Sequence[float]
             ) -> Effects:
    """What one real step on each candidate does to the target (``targets[0]``; the loss also on the
    second draw ``targets[1]``, for the re-test), relative to the null step, at the optimizer's
    learning rate (and the loss at ``further_learning_rates``); the Solver is restored after each
    step and at the end."""
    snapshot = _Snapshot(solver)
    target, retest = targets
    with torch.no_grad():
        old_logps, _ = completion_logps(solver.model, target.batch, solver.config.sampling.temperature)
        retest_logps, _ = completion_logps(solver.model, retest.batch, solver.config.sampling.temperature)
    before = target_objective(solver, target, old_logps)

    def null_step(lr: float | None) -> None:
        snapshot.restore(lr)
        for p in snapshot.parameters:
            p.grad = torch.zeros_like(p)
        snapshot.optimizer.step()
        snapshot.optimizer.zero_grad(set_to_none=True)

    def step_on(candidate: ScoredRollouts, lr: float | None) -> float:
        snapshot.restore(lr)
        stats = update(candidate.batch, candidate.advantages)
        if stats.skipped:
            raise RuntimeError(f"bench influence: the Solver skipped its update on a candidate ({stats.skipped})")
        return stats.grad_norm

    null_step(None)
    null_loss, null_accuracy = target_objective(solver, target, old_logps), canonical_accuracy(solver, canonical)
    null_retest = target_objective(solver, retest, retest_logps)
    loss, retested, accuracy, norms, shares, sign_likeness = [], [], [], [], [], []
    for candidate in candidates:
        norms.append(step_on(candidate, None))
        loss.append(null_loss - target_objective(solver, target, old_logps))
        retested.append(null_retest - target_objective(solver, retest, retest_logps))
        accuracy.append(canonical_accuracy(solver, canonical) - null_accuracy)
        share, likeness = _second_moment_shape(snapshot)
        shares.append(share)
        sign_likeness.append(likeness)
    at = {}
    for lr in further_learning_rates:
        null_step(lr)
        null_at = target_objective(solver, target, old_logps)
        at[lr] = []
        for candidate in candidates:
            step_on(candidate, lr)
            at[lr].append(null_at - target_objective(solver, target, old_logps))
    snapshot.restore()
    clip = solver.config.optimizer.grad_clip
    mean_effect = statistics.fmean(abs(e) for e in loss)
    diagnostics = StepDiagnostics(
        candidate_share_of_v=statistics.fmean(shares), sign_likeness=statistics.fmean(sign_likeness),
        clipped=statistics.fmean(float(clip is not None and norm > clip) for norm in norms),
        null_share=abs(before - null_loss) / mean_effect if mean_effect > 0 else math.nan,
        effect_retest=spearman(torch.tensor(loss), torch.tensor(retested)))
    return Effects(torch.tensor(loss, dtype=torch.float64), torch.tensor(accuracy, dtype=torch.float64),
                    {lr: torch.tensor(e, dtype=torch.float64) for lr, e in at.items()}, diagnostics)


def _second_moment_shape(snapshot: _Snapshot) -> tuple[float, float]:
    """After a step: the candidate's share of the new second moment, and how sign-like the step's
    preconditioned gradient is (see :class:`StepDiagnostics`), read from AdamW's state."""
    group = snapshot.optimizer.param_groups[0]
    beta2, eps = float(group["betas"][1]), float(group["eps"])
    step = float(snapshot.optimizer.state[snapshot.parameters[0]]["step"])
    new = snapshot.flat_second_moment()
    own = (new - beta2 * snapshot.second_moment).clamp_min_(0)  # (1 - beta2) * g**2
    preconditioned = (own / (1 - beta2)).sqrt_() / ((new / (1 - beta2**step)).sqrt_() + eps)
    norm = float(preconditioned.norm())
    likeness = float(preconditioned.sum()) / (norm * math.sqrt(preconditioned.numel())) if norm > 0 else math.nan
    return float(own.sum() / new.sum()), likeness
