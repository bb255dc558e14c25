"""``infuser bench influence``: how faithfully and how cheaply each estimator predicts a real step.

The setting is a toy Solver partway through training (a few real RL updates, so AdamW's moments
are populated), its rollouts on a target set (the ``g_T`` side) and on candidate questions, each
candidate being one question's ``answers_per_question`` answers with Dr.GRPO advantages.

**Fidelity.** For every candidate the Solver takes one real update on that candidate alone (its
own ``update``: clipping, AdamW with momentum and weight decay), and we measure the target
objective afterwards: the clipped policy loss on the *fixed* target rollouts with importance
ratios to the pre-step policy, the objective whose on-policy gradient is ``g_T``. The measured
effect is the improvement over the step AdamW takes with a zero gradient (momentum and weight
decay alone): ``L_T(null step) - L_T(step on q)``. Subtracting that common part changes no rank,
and makes the sign mean "this candidate helped"; it is what a score predicts. Each estimator is
judged by the Spearman correlation of its scores with these effects and by sign agreement.

**Cost.** Seconds per candidate of ``score`` (best of ``repeats``, ``prepare`` excluded: it runs
once per iteration), relative to the floor of any exact method: one plain forward+backward of the
Solver's loss over the candidate's rollouts, timed interleaved with the estimator. LoRA rows are
also compared with the full-model Solver's floor (``cost_vs_full_floor``): what the adapter saves. Peak memory is the highest use during ``score`` above
the level before ``prepare`` (so what the estimator keeps from ``prepare`` counts, the target
pass's transient does not: it is the same for every estimator and once per iteration); CUDA:
allocator statistics, CPU: resident set size sampled every millisecond.

Rows with a ``lora`` adapter run on a Solver identical but for that adapter (trained the same
way; rows with the same adapter share it), with its own effects and floor.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from infuser.artifacts import write_json
from infuser.bench.common import pyplot, slug
from infuser.config import LoraConfig, ModelConfig, OptimizerConfig, RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.influence.base import InfluenceEstimator
from infuser.rl.loss import BatchTotals, policy_loss
from infuser.rl.update import PolicyUpdate
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps
from infuser.rollout.rows import Answers, ScoredRollouts
from infuser.toy.world import ToyWorld


@dataclass
class BenchEstimator:
    """One row of the benchmark.

    Attributes:
        name: the row's label (and the plot's file name).
        estimator: the estimator, configured as under ``influence:`` in ``infuser fit``.
        lora: run on the Solver with this LoRA adapter (``lora_grad`` needs one); ``None``: the
            full-model Solver.
    """

    name: str
    estimator: InfluenceEstimator
    lora: LoraConfig | None = None


@dataclass
class BenchRecord:
    """One estimator's result; the ``--json`` file is a list of these."""

    name: str
    spearman: float
    sign_agreement: float
    seconds_per_candidate: float
    cost_vs_floor: float  # against its own Solver's floor
    cost_vs_full_floor: float  # against the full-model Solver's floor (LoRA rows: the saving)
    peak_mb: float
    prepare_seconds: float
    floor_seconds_per_candidate: float
    candidates: int
    learning_rate: float
    trainable_parameters: int
    lora: dict | None  # the adapter's settings
    spearman_at: dict[str, float]  # at further learning rates, keyed by ``f"{lr:g}"``
    sign_agreement_at: dict[str, float]
    scores: list[float]
    effects: list[float]
    effects_at: dict[str, list[float]]


@dataclass
class _Setting:
    """One Solver variant and everything measured on it once, shared by its estimators."""

    solver: Solver
    target: ScoredRollouts
    candidates: list[ScoredRollouts]
    effects: Tensor
    effects_at: dict[float, Tensor]  # at the further learning rates


def bench_influence(
    estimators: list[BenchEstimator],
    solver: RoleConfig = RoleConfig(model=ModelConfig(name_or_path="builtin:toy"), optimizer=OptimizerConfig(lr=5e-4),
                                    sampling=SamplingConfig(max_new_tokens=20)),
    warmup_steps: int = 4,
    questions_per_step: int = 16,
    target_questions: int = 32,
    candidate_questions: int = 48,
    answers_per_question: int = 8,
    further_learning_rates: list[float] | None = None,
    batch_size: int = 8,
    repeats: int = 3,
    accelerator: str = "cpu",
    seed: int = 0,
    json: str | None = None,
) -> list[BenchRecord]:
    """Fidelity (vs one real optimizer step per candidate) and cost of influence estimators.

    Args:
        estimators: the rows; each names an estimator as ``influence:`` does in ``infuser fit``.
        solver: the Solver (model, AdamW settings incl. the learning rate the fidelity is
            measured at, sampling, loss). Its update is forced to one optimizer step.
        warmup_steps: real RL updates before measuring, so AdamW's moments are populated.
        questions_per_step: questions per warm-up update.
        target_questions: target-set questions (those with 0 < pass < 1 form ``g_T``).
        candidate_questions: candidate questions drawn (those with 0 < pass < 1 are scored).
        answers_per_question: Solver answers per question (one Dr.GRPO group).
        further_learning_rates: also measure fidelity with steps of these sizes (same Solver
            state, same scores): where first-order predictions stop holding.
        batch_size: candidates per ``score`` call (as the loop's ``influence_batch_size``).
        repeats: timing repeats; the fastest counts.
        accelerator: ``cpu`` or ``cuda``.
        seed: seeds the model initialisation, sampling and question draws.
        json: write the records here, and one scatter plot per estimator next to it.
    """
    if not estimators:
        raise ValueError("estimators: list at least one estimator to benchmark")
    torch.set_flush_denormal(True)  # Adam moments decaying into denormals make CPU steps crawl
    fabric = L.Fabric(accelerator=accelerator, devices=1)
    update = dataclasses.replace(solver.update, ppo_epochs=1, mini_batch_size=None)
    full = dataclasses.replace(solver, update=update)
    variants = {_label(entry.lora): dataclasses.replace(full, model=dataclasses.replace(solver.model, lora=entry.lora))
                for entry in estimators if entry.lora is not None}
    variants[_label(None)] = full  # also the reference floor of every row
    world = ToyWorld()
    plan = _Plan(warmup_steps, questions_per_step, target_questions, candidate_questions, answers_per_question,
                 tuple(further_learning_rates or ()), seed)
    settings = {label: _setting(fabric, config, world, plan) for label, config in variants.items()}
    records = [_measure(entry, settings[_label(entry.lora)], settings[_label(None)], batch_size, repeats)
               for entry in estimators]
    _print_table(records, settings)
    if json is not None:
        path = Path(json)
        write_json(path, [dataclasses.asdict(record) for record in records])
        for record in records:
            _scatter(record, path.with_name(f"{path.stem}_{slug(record.name, 'estimator')}.png"))
    return records


# -- the setting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How the setting is drawn: the same for every Solver variant."""

    warmup_steps: int
    questions_per_step: int
    target_questions: int
    candidate_questions: int
    answers_per_question: int
    further_learning_rates: tuple[float, ...]
    seed: int


def _setting(fabric: L.Fabric, config: RoleConfig, world: ToyWorld, plan: _Plan) -> _Setting:
    torch.manual_seed(plan.seed)
    solver = Solver(config, PromptTemplates())
    update = solver.set_up(fabric)
    sampler = torch.Generator().manual_seed(plan.seed)
    n = plan.answers_per_question
    for step in range(plan.warmup_steps):
        answers = solver.answer(world.question_set(f"bench-warmup-{step}", plan.questions_per_step, plan.seed), n,
                                sampler)
        update(answers.batch, solver.advantages(answers.rewards, answers.batch.prompt_index))
    target_answers, target_rows = _with_signal(solver, world.question_set("target", plan.target_questions, plan.seed),
                                               n, sampler)
    pool, pool_rows = _with_signal(solver, world.question_set("bench-candidates", plan.candidate_questions, plan.seed),
                                   n, sampler)
    if not target_rows or len(pool_rows) < 3:
        raise RuntimeError(f"bench influence: the Solver ({config.model.name_or_path}) leaves {len(target_rows)} target "
                           f"and {len(pool_rows)} candidate questions with 0 < pass rate < 1; use a better-trained "
                           "model or more questions")
    target = _rollouts(solver, target_answers, [r for rows in target_rows for r in rows])
    candidates = [_rollouts(solver, pool, rows) for rows in pool_rows]
    effects_at = {lr: _effects(solver, update, target, candidates, lr) for lr in plan.further_learning_rates}
    return _Setting(solver, target, candidates, _effects(solver, update, target, candidates), effects_at)


def _with_signal(solver: Solver, questions: list[MCQuestion], n: int, sampler: torch.Generator
                 ) -> tuple[Answers, list[list[int]]]:
    """The Solver's answers, and the rows of each question it sometimes gets right."""
    answers = solver.answer(questions, n, sampler)
    rates = answers.pass_rates().tolist()
    return answers, [answers.rows_of(q) for q, rate in enumerate(rates) if 0.0 < rate < 1.0]


def _rollouts(solver: Solver, answers: Answers, rows: list[int]) -> ScoredRollouts:
    """``rows`` of ``answers`` with Dr.GRPO advantages (groups: questions)."""
    advantages = solver.advantages(answers.rewards, answers.batch.prompt_index)
    return ScoredRollouts(answers.batch.select(rows), advantages[rows])


# -- ground truth --------------------------------------------------------------------------------


def _objective(solver: Solver, target: ScoredRollouts, old_logps: Tensor) -> float:
    """The target's clipped policy loss with importance ratios to ``old_logps`` (no KL, no entropy).

    Its gradient at the pre-step policy is ``g_T``. Its normalisers scale it by a constant, which
    changes neither ranks nor signs.
    """
    batch = target.batch
    mask = solver.loss_mask(batch)
    with torch.no_grad():
        logps, _ = completion_logps(solver.model, batch, solver.config.sampling.temperature)
    totals = BatchTotals(sequences=len(batch), tokens=int(mask.sum()), max_completion_length=batch.completion_ids.size(1))
    config = dataclasses.replace(solver.config.update.loss, beta=0.0, entropy_coef=0.0)
    return float(policy_loss(logps.double(), old_logps.double(), target.advantages.double(), mask, config, totals).loss)


def _effects(solver: Solver, update: PolicyUpdate, target: ScoredRollouts, candidates: Sequence[ScoredRollouts],
             lr: float | None = None) -> Tensor:
    """``L_T(null step) - L_T(one real step on q)`` per candidate, with steps of size ``lr``
    (``None``: the optimizer's own); the Solver is restored after each and at the end."""
    optimizer = solver.optimizer_state()
    parameters = solver.trainable_parameters()
    saved_parameters = [p.detach().clone() for p in parameters]
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    with torch.no_grad():
        old_logps, _ = completion_logps(solver.model, target.batch, solver.config.sampling.temperature)

    def reset(step_lr: float | None) -> None:
        with torch.no_grad():
            for p, value in zip(parameters, saved_parameters):
                p.copy_(value)
        optimizer.load_state_dict(copy.deepcopy(saved_optimizer))  # load_state_dict may alias its input
        for group in optimizer.param_groups if step_lr is not None else ():
            group["lr"] = step_lr

    reset(lr)
    for p in parameters:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    null = _objective(solver, target, old_logps)
    effects = []
    for candidate in candidates:
        reset(lr)
        stats = update(candidate.batch, candidate.advantages)
        if stats.skipped:
            raise RuntimeError(f"bench influence: the Solver skipped its update on a candidate ({stats.skipped})")
        effects.append(null - _objective(solver, target, old_logps))
    reset(None)
    return torch.tensor(effects, dtype=torch.float64)


# -- cost ----------------------------------------------------------------------------------------


def _best_seconds(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """The fastest of ``repeats`` timings of each run, the runs interleaved so that they share
    the machine's load (a ratio of two timings taken minutes apart means little on a busy box)."""
    best = [math.inf] * len(runs)
    for _ in range(max(repeats, 1)):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - started)
    return best


def _floor(solver: Solver, candidates: Sequence[ScoredRollouts]) -> None:
    """One plain forward+backward of the Solver's loss per candidate: the cost of any exact method."""
    parameters = solver.trainable_parameters()
    for candidate in candidates:
        solver.surrogate_loss(candidate).backward(inputs=parameters)
        for p in parameters:
            p.grad = None


def _measure(entry: BenchEstimator, setting: _Setting, full: _Setting, batch_size: int, repeats: int) -> BenchRecord:
    """One row. ``full`` is the full-model setting, whose floor every row is also compared with."""
    solver, estimator, candidates = setting.solver, entry.estimator, setting.candidates
    device = solver.trainable_parameters()[0].device

    def score() -> Tensor:
        return torch.cat([estimator.score(solver, candidates[i : i + batch_size])
                          for i in range(0, len(candidates), batch_size)])

    before = _allocated_bytes(device)
    started = time.perf_counter()
    estimator.prepare(solver, setting.target)
    prepare_seconds = time.perf_counter() - started
    _allocated_bytes(device)  # hands the target pass's freed memory back before the score's peak is taken
    peak, scores = _peak_bytes(score, device)
    runs = [score, lambda: _floor(solver, candidates), lambda: _floor(full.solver, full.candidates)]
    times = _best_seconds(runs if setting is not full else runs[:2], repeats)
    seconds, floor = times[0] / len(candidates), times[1] / len(candidates)
    full_floor = times[2] / len(full.candidates) if setting is not full else floor
    effects = setting.effects
    return BenchRecord(
        name=entry.name, spearman=spearman(scores, effects), sign_agreement=sign_agreement(scores, effects),
        seconds_per_candidate=seconds, cost_vs_floor=seconds / floor, cost_vs_full_floor=seconds / full_floor,
        peak_mb=max(peak - before, 0) / 2**20,
        prepare_seconds=prepare_seconds, floor_seconds_per_candidate=floor, candidates=len(candidates),
        learning_rate=float(solver.optimizer_state().param_groups[0]["lr"]),
        trainable_parameters=sum(p.numel() for p in solver.trainable_parameters()),
        lora=dataclasses.asdict(entry.lora) if entry.lora is not None else None,
        spearman_at={f"{lr:g}": spearman(scores, e) for lr, e in setting.effects_at.items()},
        sign_agreement_at={f"{lr:g}": sign_agreement(scores, e) for lr, e in setting.effects_at.items()},
        scores=scores.tolist(), effects=effects.tolist(),
        effects_at={f"{lr:g}": e.tolist() for lr, e in setting.effects_at.items()},
    )


def _allocated_bytes(device: torch.device) -> int:
    """Memory in use now: the CUDA allocator's, or on CPU the resident set after freed heap
    pages are handed back to the OS (glibc), so earlier high-water marks do not count."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return _resident_bytes()


def _peak_bytes(run: Callable[[], Tensor], device: torch.device) -> tuple[int, Tensor]:
    """The highest memory in use while ``run()`` runs, and its result.

    CUDA: the allocator's peak. CPU: the resident set size sampled every millisecond.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device), result
    peak = [_resident_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], _resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _resident_bytes()), result


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- statistics and reporting --------------------------------------------------------------------


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = _ranks(x.double()), _ranks(y.double())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float(rx.dot(ry)) / denominator if denominator > 0 else float("nan")


def sign_agreement(scores: Tensor, effects: Tensor) -> float:
    """Fraction of candidates whose score has the sign of their measured effect."""
    return float(((scores * effects) > 0).double().mean())


def _ranks(values: Tensor) -> Tensor:
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype)
    for value in values.unique():
        tied = values == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _label(lora: LoraConfig | None) -> str:
    """Which Solver a row runs on (rows with equal adapters share one)."""
    return "Solver" if lora is None else f"Solver + LoRA (r={lora.r}, alpha={lora.alpha}, {lora.target_modules})"


def _print_table(records: list[BenchRecord], settings: dict[str, _Setting]) -> None:
    for label, setting in settings.items():
        parameters = sum(p.numel() for p in setting.solver.trainable_parameters())
        total = sum(p.numel() for p in setting.solver.model.parameters())
        print(f"{label}: {parameters:,} of {total:,} parameters trained, {len(setting.candidates)} candidates with "
              f"signal, target {len(setting.target.batch)} rollouts")
    further = list(records[0].spearman_at)
    lr = records[0].learning_rate
    print(f"{'estimator':<28}{f'rho@{lr:g}':>11}{'sign':>6}" + "".join(f"{f'rho@{k}':>11}" for k in further)
          + f"{'ms/cand':>9}{'floor ms':>9}{'vs floor':>9}{'vs full':>8}{'peak MB':>9}")
    for r in records:
        print(f"{r.name:<28}{r.spearman:>11.3f}{r.sign_agreement:>6.2f}"
              + "".join(f"{r.spearman_at[k]:>11.3f}" for k in further)
              + f"{r.seconds_per_candidate * 1e3:>9.1f}{r.floor_seconds_per_candidate * 1e3:>9.1f}"
              f"{r.cost_vs_floor:>9.2f}{r.cost_vs_full_floor:>8.2f}{r.peak_mb:>9.1f}")


def _scatter(record: BenchRecord, path: Path) -> None:
    """Score against measured effect, one panel per learning rate (the run's first)."""
    plt = pyplot()
    if plt is None:
        return
    panels = [(f"{record.learning_rate:g}", record.effects, record.spearman)]
    panels += [(lr, record.effects_at[lr], record.spearman_at[lr]) for lr in record.effects_at]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (lr, effects, rho) in zip(axes[0], panels):
        ax.scatter(effects, record.scores, s=12)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel(f"target-loss decrease of one step, lr {lr}")
        ax.set_title(f"Spearman {rho:.3f}", fontsize=10)
    axes[0][0].set_ylabel(f"{record.name} score")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
