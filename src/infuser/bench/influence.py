"""``infuser bench influence``: how faithfully and how cheaply each estimator predicts a real step.

The setting is a toy Solver partway through training, its rollouts on a target set (the ``g_T``
side) and on candidate questions, each candidate being one question's ``answers_per_question``
answers with Dr.GRPO advantages. One draw of that setting cannot rank estimators whose figures
differ by a few hundredths, so it is drawn many times: for every seed the Solver takes its own
trajectory of real RL updates and is measured at several points of it (``states``: after 1 update
AdamW's second moment holds one gradient, after 16 it has settled), each time with fresh target
and candidate rollouts. Figures are means over (seed, state) with Student-t intervals over seeds;
estimators are compared with the ``baseline`` row seed by seed (paired), overall and per state.

**Fidelity.** For every candidate the Solver takes one real update on that candidate alone, and
its effect on the target objective and on the target's exact accuracy is measured relative to the
null step (:mod:`infuser.bench.step_effects`, the ground truth). Each estimator is judged by the
Spearman correlation of its scores with these effects and by sign agreement.

**Re-test reliability.** Each estimator also scores a second draw of the candidates' answers and,
separately, the first draw against a second draw of the target rollouts; the Spearman correlation
of the two score vectors bounds the fidelity a score can show against effects measured on one draw.

**Step diagnostics.** What shapes the real step at each state (the candidate's own share of AdamW's
new second moment, how sign-like the step is, how often clipping bites, how large the common
momentum and weight-decay part is), read from the optimizer after each candidate's step.

**Cost.** Measured once, at the first seed's last state. Seconds per candidate of ``score`` (best of
``repeats``, ``prepare`` excluded: it runs once per iteration), relative to the floor of any exact
method: one plain forward+backward of the Solver's loss over the candidate's rollouts, timed
interleaved with the estimator. LoRA rows are also compared with the full-model Solver's floor
(``cost_vs_full_floor``): what the adapter saves. Peak memory is the highest use during ``score``
above the level before ``prepare`` (so what the estimator keeps from ``prepare`` counts, the
target pass's transient does not: it is the same for every estimator and once per iteration);
CUDA: allocator statistics, CPU: resident set size sampled every millisecond.

**Same inputs, same figures.** The benchmark pins torch's intra-op thread count (``threads``)
while it runs: float32 kernels sum in an order that depends on it, and at a learning rate where
steps are non-linear those last bits reorder near-tied candidates. With the count pinned, two runs
of one config on one machine give identical fidelity figures; timings vary.

Rows with a ``lora`` adapter run on a Solver identical but for that adapter (trained the same
way; rows with the same adapter share it), with its own effects and floor.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from infuser.artifacts import write_json
from infuser.bench.common import Interval, mean_interval, paired_interval, print_table, pyplot, slug
from infuser.bench.step_effects import Plan, Setting, StepDiagnostics, trajectory
from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig
from infuser.console import quiet_libraries
from infuser.influence.agreement import spearman
from infuser.influence.base import InfluenceEstimator
from infuser.model_config import LoraConfig, ModelConfig
from infuser.roles.solver import Solver
from infuser.rollout.rows import ScoredRollouts
from infuser.toy.rules import RuleWorld
from infuser.toy.world import ArithmeticWorld, ToyWorld


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
class Profile:
    """How much to measure.

    Attributes:
        states: measure the Solver after this many real RL updates (each seed's trajectory is
            measured at every count on its way).
        seeds: independent draws of everything: the Solver's trajectory, the target and candidate
            questions, their answers.
        candidate_questions: candidate questions drawn per measurement (those with
            0 < pass rate < 1 are scored).
    """

    states: list[int] = field(default_factory=lambda: [1, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    candidate_questions: int = 32


@dataclass
class SettingRecord:
    """One estimator at one (seed, Solver state)."""

    seed: int
    state: int  # real updates the Solver had taken
    candidates: int
    spearman: float
    spearman_accuracy: float  # against the change of the target's exact accuracy
    sign_agreement: float
    spearman_at: dict[str, float]  # at further learning rates, keyed by ``f"{lr:g}"``
    sign_agreement_at: dict[str, float]
    retest_candidates: float  # Spearman of the scores of two draws of the candidates' answers
    retest_target: float  # Spearman of the scores against two draws of the target rollouts
    diagnostics: StepDiagnostics
    scores: list[float]
    effects: list[float]
    accuracy_effects: list[float]
    effects_at: dict[str, list[float]]


@dataclass
class StateSummary:
    """One estimator at one Solver state, over the seeds (intervals: ``mean``, ``ci_low``, ``ci_high``)."""

    spearman: dict[str, float]
    vs_baseline: dict[str, float] | None  # paired over seeds
    spearman_accuracy: dict[str, float]
    accuracy_vs_baseline: dict[str, float] | None
    sign_agreement: float
    retest_candidates: float
    retest_target: float
    diagnostics: dict[str, float]


@dataclass
class BenchRecord:
    """One estimator's result; the ``--json`` file is a list of these.

    Fidelity figures are means over every (seed, state); intervals are 95% Student-t intervals over
    seeds of the per-seed means over states (``mean``, ``ci_low``, ``ci_high``); ``vs_baseline``
    is the paired difference to the ``baseline`` row, seed by seed.
    """

    name: str
    spearman: float
    spearman_ci: dict[str, float]
    vs_baseline: dict[str, float] | None
    baseline: str | None
    spearman_accuracy: float
    spearman_accuracy_ci: dict[str, float]
    accuracy_vs_baseline: dict[str, float] | None
    sign_agreement: float
    retest_candidates: float
    retest_target: float
    by_state: dict[str, StateSummary]
    seconds_per_candidate: float
    cost_vs_floor: float  # against its own Solver's floor
    cost_vs_full_floor: float  # against the full-model Solver's floor (LoRA rows: the saving)
    peak_mb: float
    prepare_seconds: float
    floor_seconds_per_candidate: float
    candidates: int  # scored, over every (seed, state)
    learning_rate: float
    trainable_parameters: int
    lora: dict | None  # the adapter's settings
    spearman_at: dict[str, float]  # at further learning rates, keyed by ``f"{lr:g}"``
    sign_agreement_at: dict[str, float]
    seeds: list[int]
    states: list[int]
    settings: list[SettingRecord]  # every (seed, state), with its scores and effects


def bench_influence(
    estimators: list[BenchEstimator],
    solver: RoleConfig = RoleConfig(model=ModelConfig(name_or_path="builtin:toy"), optimizer=OptimizerConfig(lr=5e-4),
                                    sampling=SamplingConfig(max_new_tokens=20)),
    profile: Profile = Profile(),
    quick_profile: Profile = Profile(states=[1, 4], seeds=[0, 1, 2], candidate_questions=16),
    quick: bool = False,
    baseline: str | None = "optimizer_aware",
    questions_per_step: int = 16,
    target_questions: int = 32,
    answers_per_question: int = 8,
    further_learning_rates: list[float] | None = None,
    batch_size: int = 8,
    repeats: int = 3,
    threads: int | None = 1,
    accelerator: str = "cpu",
    world: Literal["toy", "rules"] = "toy",
    json: str | None = None,
) -> list[BenchRecord]:
    """Fidelity (vs one real optimizer step per candidate, over Solver states and seeds) and cost
    of influence estimators.

    Args:
        estimators: the rows; each names an estimator as ``influence:`` does in ``infuser fit``.
        solver: the Solver (model, AdamW settings incl. the learning rate the fidelity is
            measured at, sampling, loss). Its update is forced to one optimizer step.
        profile: Solver states, seeds and candidates of the full benchmark.
        quick_profile: those of ``--quick`` (a few minutes).
        quick: run ``quick_profile`` instead of ``profile``.
        baseline: the row every other is compared with, seed by seed (``None``: no comparison).
        questions_per_step: questions per real update on the way to each state.
        target_questions: target-set questions (those with 0 < pass < 1 form ``g_T``; all of them
            enter the exact accuracy).
        answers_per_question: Solver answers per question (one Dr.GRPO group).
        further_learning_rates: also measure fidelity with steps of these sizes (same Solver
            state, same scores): where first-order predictions stop holding.
        batch_size: candidates per ``score`` call (as the loop's ``influence_batch_size``).
        repeats: timing repeats; the fastest counts.
        threads: torch intra-op threads while the benchmark runs (``None``: leave as is). Pinned,
            the fidelity figures do not depend on the machine's thread settings.
        accelerator: ``cpu`` or ``cuda``.
        world: where the questions come from: ``toy`` (the aligned world, ``builtin:toy``'s) or
            ``rules`` (the rule world's fixed instance, ``builtin:toy-rules``'s); the Solver must
            answer that world's questions.
        json: write the records here, and one scatter plot per estimator next to it.
    """
    if not estimators:
        raise ValueError("estimators: list at least one estimator to benchmark")
    names = [entry.name for entry in estimators]
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: names must be unique, got {names}")
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline: {baseline!r} is not one of the estimators {names}")
    chosen, profile_name = (quick_profile, "quick_profile") if quick else (profile, "profile")
    if not chosen.seeds or not chosen.states or min(chosen.states) < 0:
        raise ValueError(f"{profile_name}: expected at least one seed and one state (updates >= 0), got "
                         f"seeds {chosen.seeds}, states {chosen.states}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads: expected at least 1 (or null to leave torch's setting), got {threads}")
    plan = Plan(tuple(sorted(set(chosen.states))), questions_per_step, target_questions, chosen.candidate_questions,
                 answers_per_question, tuple(further_learning_rates or ()))
    quiet_libraries()
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        started = time.perf_counter()
        records = _run(estimators, solver, plan, list(chosen.seeds), baseline, batch_size, repeats, accelerator,
                       RuleWorld() if world == "rules" else ToyWorld())
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(before)
    _print_tables(records, seconds, "quick" if quick else "full")
    if json is not None:
        path = Path(json)
        write_json(path, [dataclasses.asdict(record) for record in records])
        for record in records:
            _scatter(record, path.with_name(f"{path.stem}_{slug(record.name, 'estimator')}.png"))
    return records


# -- the runs ----------------------------------------------------------------------------------


def _run(estimators: list[BenchEstimator], solver: RoleConfig, plan: Plan, seeds: list[int], baseline: str | None,
         batch_size: int, repeats: int, accelerator: str, world: ArithmeticWorld) -> list[BenchRecord]:
    torch.set_flush_denormal(True)  # Adam moments decaying into denormals make CPU steps crawl
    fabric = L.Fabric(accelerator=accelerator, devices=1)
    update = dataclasses.replace(solver.update, ppo_epochs=1, mini_batch_size=None)
    full = dataclasses.replace(solver, update=update)
    variants = {_label(None): full}  # first: the reference floor of every row
    variants.update({_label(entry.lora): dataclasses.replace(full, model=dataclasses.replace(solver.model,
                                                                                                lora=entry.lora))
                     for entry in estimators if entry.lora is not None})
    measured: list[list[SettingRecord]] = [[] for _ in estimators]
    costs: dict[int, _Cost] = {}
    timed = (seeds[0], plan.states[-1])
    reference: Setting | None = None  # the full Solver at the timed measurement
    for seed in seeds:
        for label, config in variants.items():
            rows = [index for index, entry in enumerate(estimators) if _label(entry.lora) == label]
            started = time.perf_counter()
            for setting in trajectory(fabric, config, world, plan, seed):
                for index in rows:
                    measured[index].append(_fidelity(estimators[index].estimator, setting, batch_size))
                if (seed, setting.state) == timed:
                    reference = reference or setting
                    for index in rows:
                        costs[index] = _cost(estimators[index].estimator, setting, reference, batch_size, repeats)
                print(f"seed {seed}, {label}, after {setting.state} updates: {len(setting.candidates)} candidates, "
                      f"target {len(setting.target.batch)} rollouts ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr, flush=True)
    by_name = dict(zip((entry.name for entry in estimators), measured))
    return [_record(entry, measured[index], by_name.get(baseline) if baseline != entry.name else None, baseline,
                    costs[index]) for index, entry in enumerate(estimators)]


# -- fidelity ------------------------------------------------------------------------------------


def _scores(estimator: InfluenceEstimator, solver: Solver, candidates: Sequence[ScoredRollouts],
            batch_size: int) -> Tensor:
    """Scores of ``candidates`` in calls of ``batch_size``, as the loop makes them."""
    return torch.cat([estimator.score(solver, candidates[i : i + batch_size])
                      for i in range(0, len(candidates), batch_size)])


def _fidelity(estimator: InfluenceEstimator, setting: Setting, batch_size: int) -> SettingRecord:
    """One estimator's scores at one setting against the effects, and their re-test reliability."""
    solver, candidates = setting.solver, list(setting.candidates.values())
    estimator.prepare(solver, setting.target)
    scores = _scores(estimator, solver, candidates, batch_size)
    both = list(setting.retest_candidates)
    position = {q: index for index, q in enumerate(setting.candidates)}
    retest_candidates = math.nan  # a correlation needs at least 3 questions with signal in both draws
    if len(both) >= 3:
        redrawn = _scores(estimator, solver, [setting.retest_candidates[q] for q in both], batch_size)
        retest_candidates = spearman(scores[[position[q] for q in both]], redrawn)
    estimator.prepare(solver, setting.retest_target)
    retest_target = spearman(scores, _scores(estimator, solver, candidates, batch_size))
    effects = setting.effects
    return SettingRecord(
        seed=setting.seed, state=setting.state, candidates=len(candidates), spearman=spearman(scores, effects.loss),
        spearman_accuracy=spearman(scores, effects.accuracy), sign_agreement=sign_agreement(scores, effects.loss),
        spearman_at={f"{lr:g}": spearman(scores, e) for lr, e in effects.at.items()},
        sign_agreement_at={f"{lr:g}": sign_agreement(scores, e) for lr, e in effects.at.items()},
        retest_candidates=retest_candidates, retest_target=retest_target, diagnostics=effects.diagnostics,
        scores=scores.tolist(), effects=effects.loss.tolist(), accuracy_effects=effects.accuracy.tolist(),
        effects_at={f"{lr:g}": e.tolist() for lr, e in effects.at.items()})


def _record(entry: BenchEstimator, measured: list[SettingRecord], baseline: list[SettingRecord] | None,
            baseline_name: str | None, cost: _Cost) -> BenchRecord:
    """The row: its measurements summarised over seeds and states, and its cost."""
    seeds = sorted({m.seed for m in measured})
    states = sorted({m.state for m in measured})

    def per_seed(records: list[SettingRecord], value: Callable[[SettingRecord], float],
                 state: int | None = None) -> list[float]:
        """Per seed: the value at ``state``, or its mean over the states."""
        return [statistics.fmean(value(r) for r in records if r.seed == seed and state in (None, r.state))
                for seed in seeds]

    def compared(value: Callable[[SettingRecord], float], state: int | None = None) -> dict[str, float] | None:
        if baseline is None:
            return None
        return paired_interval(per_seed(measured, value, state), per_seed(baseline, value, state)).as_dict()

    def mean(value: Callable[[SettingRecord], float], state: int | None = None) -> float:
        return statistics.fmean(per_seed(measured, value, state))

    def interval(value: Callable[[SettingRecord], float], state: int | None = None) -> Interval:
        """Of a rank correlation: within [-1, 1]."""
        return mean_interval(per_seed(measured, value, state)).within(-1.0, 1.0)

    fidelity, on_accuracy = (lambda r: r.spearman), (lambda r: r.spearman_accuracy)
    by_state = {}
    for state in states:
        at_state = [m for m in measured if m.state == state]
        by_state[str(state)] = StateSummary(
            spearman=interval(fidelity, state).as_dict(), vs_baseline=compared(fidelity, state),
            spearman_accuracy=interval(on_accuracy, state).as_dict(), accuracy_vs_baseline=compared(on_accuracy, state),
            sign_agreement=mean(lambda r: r.sign_agreement, state),
            retest_candidates=mean(lambda r: r.retest_candidates, state),
            retest_target=mean(lambda r: r.retest_target, state),
            diagnostics={name: statistics.fmean(getattr(m.diagnostics, name) for m in at_state)
                         for name in (f.name for f in dataclasses.fields(StepDiagnostics))})
    further = list(measured[0].spearman_at)
    return BenchRecord(
        name=entry.name, spearman=mean(fidelity), spearman_ci=interval(fidelity).as_dict(),
        vs_baseline=compared(fidelity), baseline=baseline_name if baseline is not None else None,
        spearman_accuracy=mean(on_accuracy), spearman_accuracy_ci=interval(on_accuracy).as_dict(),
        accuracy_vs_baseline=compared(on_accuracy), sign_agreement=mean(lambda r: r.sign_agreement),
        retest_candidates=mean(lambda r: r.retest_candidates), retest_target=mean(lambda r: r.retest_target),
        by_state=by_state, seconds_per_candidate=cost.seconds, cost_vs_floor=cost.seconds / cost.floor,
        cost_vs_full_floor=cost.seconds / cost.full_floor, peak_mb=cost.peak_mb, prepare_seconds=cost.prepare_seconds,
        floor_seconds_per_candidate=cost.floor, candidates=sum(m.candidates for m in measured),
        learning_rate=cost.learning_rate, trainable_parameters=cost.trainable_parameters,
        lora=dataclasses.asdict(entry.lora) if entry.lora is not None else None,
        spearman_at={lr: mean(lambda r: r.spearman_at[lr]) for lr in further},
        sign_agreement_at={lr: mean(lambda r: r.sign_agreement_at[lr]) for lr in further},
        seeds=seeds, states=states, settings=measured)


# -- cost ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cost:
    """One row's cost at the timed setting (seconds per candidate)."""

    seconds: float
    floor: float
    full_floor: float
    peak_mb: float
    prepare_seconds: float
    learning_rate: float
    trainable_parameters: int


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


def _cost(estimator: InfluenceEstimator, setting: Setting, full: Setting, batch_size: int, repeats: int) -> _Cost:
    """One row's cost. ``full`` is the full-model setting, whose floor every row is also compared with."""
    solver, candidates = setting.solver, list(setting.candidates.values())
    device = solver.trainable_parameters()[0].device
    before = _allocated_bytes(device)
    started = time.perf_counter()
    estimator.prepare(solver, setting.target)
    prepare_seconds = time.perf_counter() - started
    _allocated_bytes(device)  # hands the target pass's freed memory back before the score's peak is taken
    peak, _ = _peak_bytes(lambda: _scores(estimator, solver, candidates, batch_size), device)
    full_candidates = list(full.candidates.values())
    runs = [lambda: _scores(estimator, solver, candidates, batch_size), lambda: _floor(solver, candidates),
            lambda: _floor(full.solver, full_candidates)]
    times = _best_seconds(runs if setting is not full else runs[:2], repeats)
    seconds, floor = times[0] / len(candidates), times[1] / len(candidates)
    return _Cost(seconds=seconds, floor=floor,
                 full_floor=times[2] / len(full_candidates) if setting is not full else floor,
                 peak_mb=max(peak - before, 0) / 2**20, prepare_seconds=prepare_seconds,
                 learning_rate=float(solver.optimizer_state().param_groups[0]["lr"]),
                 trainable_parameters=sum(p.numel() for p in solver.trainable_parameters()))


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


def sign_agreement(scores: Tensor, effects: Tensor) -> float:
    """Fraction of candidates whose score has the sign of their measured effect."""
    return float(((scores * effects) > 0).double().mean())


def _label(lora: LoraConfig | None) -> str:
    """Which Solver a row runs on (rows with equal adapters share one)."""
    return "Solver" if lora is None else f"Solver + LoRA (r={lora.r}, alpha={lora.alpha}, {lora.target_modules})"


def _interval_text(interval: dict[str, float] | None, signed: bool = False) -> str:
    if interval is None:
        return "-"
    form = "+.3f" if signed else ".3f"
    return f"{interval['mean']:{form}} [{interval['ci_low']:{form}}, {interval['ci_high']:{form}}]"


def _print_tables(records: list[BenchRecord], seconds: float, profile: str) -> None:
    first = records[0]
    baseline = next((r.baseline for r in records if r.baseline is not None), None)
    print(f"\ninfluence fidelity ({profile} profile): {len(first.seeds)} seeds x states {first.states} (real updates "
          f"before measuring), lr {first.learning_rate:g}; means with 95% t intervals over seeds")
    further = list(first.spearman_at)
    print_table(
        ["estimator", "rho (loss)", f"vs {baseline}", "rho (accuracy)", "sign", "retest cand", "retest target",
         *(f"rho@{lr}" for lr in further), "ms/cand", "floor ms", "vs floor", "vs full", "peak MB"],
        [[r.name, _interval_text(r.spearman_ci), _interval_text(r.vs_baseline, signed=True),
          _interval_text(r.spearman_accuracy_ci), f"{r.sign_agreement:.2f}", f"{r.retest_candidates:.3f}",
          f"{r.retest_target:.3f}", *(f"{r.spearman_at[lr]:.3f}" for lr in further),
          f"{r.seconds_per_candidate * 1e3:.1f}", f"{r.floor_seconds_per_candidate * 1e3:.1f}",
          f"{r.cost_vs_floor:.2f}", f"{r.cost_vs_full_floor:.2f}", f"{r.peak_mb:.1f}"] for r in records])
    states = list(first.by_state)
    print()
    print_table(["estimator", *(f"after {s}: rho, vs {baseline}" for s in states)],
                [[r.name, *(f"{r.by_state[s].spearman['mean']:.3f}, "
                            f"{_interval_text(r.by_state[s].vs_baseline, signed=True)}" for s in states)]
                 for r in records], title="by Solver state (loss effect)")
    print()
    shown = {}
    for r in records:  # one row per Solver variant: the diagnostics describe the Solver, not the estimator
        shown.setdefault(_label(LoraConfig(**r.lora)) if r.lora else _label(None), r)
    print_table(["Solver", "after", "g_q^2 share of v'", "sign-likeness", "clipped", "null step / |effect|",
                 "effect retest"],
                [[label, s, *(f"{r.by_state[s].diagnostics[name]:.3f}" for name in
                              ("candidate_share_of_v", "sign_likeness", "clipped", "null_share", "effect_retest"))]
                 for label, r in shown.items() for s in states], title="the real steps (means over seeds)")
    print(f"benchmark wall time {seconds:.0f} s")


def _scatter(record: BenchRecord, path: Path) -> None:
    """Score against measured loss effect, one panel per Solver state, one colour per seed.

    Scores and effects are divided by their standard deviation within each draw (not centred, so
    signs stay): dot-mode scales and effect sizes differ between draws, ranks are what is judged.
    """
    plt = pyplot()
    if plt is None:
        return
    states = list(record.by_state)
    figure, axes = plt.subplots(1, len(states), figsize=(3.6 * len(states), 3.6), squeeze=False)
    for ax, state in zip(axes[0], states):
        for measured in (m for m in record.settings if str(m.state) == state):
            effects, scores = torch.tensor(measured.effects), torch.tensor(measured.scores)
            ax.scatter(effects / effects.std().clamp_min(1e-300), scores / scores.std().clamp_min(1e-300), s=8,
                       alpha=0.7, label=f"seed {measured.seed}")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("target-loss decrease / std")
        ax.set_title(f"after {state} updates: rho {record.by_state[state].spearman['mean']:.3f}", fontsize=10)
    axes[0][0].set_ylabel(f"{record.name} score / std")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
