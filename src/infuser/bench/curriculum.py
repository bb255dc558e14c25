"""``infuser bench curriculum``: does influence guidance beat self-evolution baselines?

Every arm is an ordinary ``infuser fit`` run: one base configuration shared by all arms, plus the
arm's few overriding keys (a generator reward, an estimator, an advantage, a frozen switch). Arms
therefore differ only in YAML, exactly as a user's own comparison would, and the budget keys
(iterations, documents, questions, answers, the Solver's update) may not differ at all: an arm
that overrides one is refused before anything runs.

Each (arm, seed) runs as its own ``infuser fit`` process, ``workers`` at a time, in
``cache_dir/<profile>/<arm>/seed_<n>``. A run that finished (``summary.json``) under the same
configuration is read back, not run again; a run that was interrupted resumes from its last
checkpoint (``--ckpt_path last``); a run whose configuration changed starts over. So an
interrupted benchmark, run again, continues where it stopped.

The cache is keyed on configuration, not on code: each run records a digest of the infuser
source it was started (or resumed) with, and the table warns when the runs it reads were made by
different code, which a comparison of arms must not mix.

The number reported is the held-out accuracy gain over the base (the accuracy of the last
evaluation minus the first, on questions of the target distribution that no arm trains on),
mean and std over seeds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infuser.artifacts import write_json
from infuser.bench.common import pyplot, slug

log = logging.getLogger(__name__)

# Keys that set the budget; an arm overriding any of them would not be an equal-budget comparison.
BUDGET_KEYS = ("loop.iterations", "loop.documents_per_iteration", "loop.questions_per_document",
               "loop.answers_per_question", "loop.target_answers_per_question",
               "loop.generator_steps_per_solver_step", "loop.eval_every", "loop.eval_samples", "loop.eval_sampling",
               "solver.optimizer", "solver.update", "solver.sampling", "heldout_set", "target_set", "seed")


@dataclass
class Arm:
    """One arm of the comparison.

    Attributes:
        name: the label in the table, the JSON and the plots.
        overrides: ``infuser fit`` arguments layered over the base configuration (registered
            names work as in any YAML, e.g. ``{generator_reward: spice_variance}``).
        reference: a reference, not a competitor (e.g. the Solver trained on the target set):
            shown, but not counted as "the best baseline", and exempt from the budget check.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    reference: bool = False


@dataclass
class Profile:
    """How much to run: the seeds, and overrides applied to every arm (e.g. fewer iterations).

    Attributes:
        seeds: ``infuser fit --seed`` values; every arm runs each one.
        overrides: layered over the base configuration for every arm, before the arm's own.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArmRecord:
    """One arm's result; the ``--json`` file is a list of these."""

    arm: str
    seeds: list[int]
    heldout_gain_mean: float
    heldout_gain_std: float
    seconds: float  # wall-clock seconds of the arm's runs, summed over seeds
    heldout_start_mean: float
    heldout_end_mean: float
    target_gain_mean: float
    reference: bool
    heldout_by_iteration: dict[str, list[float]]  # iteration -> accuracy per seed
    curriculum_by_iteration: dict[str, dict[str, float]]  # iteration -> kind -> share (mean over seeds)
    golden_accuracy_by_iteration: dict[str, float]  # iteration -> the Generator's golden-answer accuracy
    code: list[str] = field(default_factory=list)  # per seed: the code digest(s) its run was made by, "+"-joined


@dataclass
class _Run:
    """One (arm, seed) process and where it writes."""

    arm: Arm
    seed: int
    root: Path
    command: list[str]
    fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.arm.name} / seed {self.seed}"


def bench_curriculum(
    arms: list[Arm],
    base_config: str,
    profile: Profile = Profile(),
    quick_profile: Profile = Profile(seeds=[0]),
    quick: bool = False,
    headline: str = "INFUSER",
    curriculum_arms: list[str] | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    cache_dir: str = "runs/bench/curriculum",
    json: str | None = None,
) -> list[ArmRecord]:
    """Held-out gain of INFUSER against self-evolution baselines, each arm over several seeds.

    Args:
        arms: the arms; each is the base configuration plus its overrides.
        base_config: the ``infuser fit`` YAML every arm starts from (a path; relative paths are
            taken from the working directory).
        profile: seeds and shared overrides of the full benchmark.
        quick_profile: seeds and shared overrides of ``--quick`` (a smoke-sized run).
        quick: run ``quick_profile`` instead of ``profile``.
        headline: the arm whose gain is compared with the best non-reference arm.
        curriculum_arms: arms whose question-kind mix is plotted over iterations (default: the
            headline and the first arm with a frozen generator).
        workers: runs at a time (processes).
        threads_per_worker: torch threads per run (``OMP_NUM_THREADS``).
        cache_dir: where runs are kept; finished runs are reused, interrupted ones resumed.
        json: write the records here, and the plots next to it.
    """
    if not arms:
        raise ValueError("arms: list at least one arm")
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arms: names must be unique, got {names}")
    if headline not in names:
        raise ValueError(f"headline: {headline!r} is not one of the arms {names}")
    if workers < 1 or threads_per_worker < 1:
        raise ValueError("workers and threads_per_worker must be at least 1")
    base = Path(base_config).resolve()
    if not base.is_file():
        raise ValueError(f"base_config: no such file: {base_config}")
    chosen, profile_name = (quick_profile, "quick") if quick else (profile, "full")
    if not chosen.seeds:
        raise ValueError(f"{profile_name} profile: seeds must not be empty")
    for arm in arms:
        if not arm.reference:
            _check_budget(arm)
    root = Path(cache_dir) / profile_name
    runs = [_plan(arm, seed, base, chosen, root) for arm in arms for seed in chosen.seeds]
    started = time.perf_counter()
    _execute(runs, workers, threads_per_worker)
    records = [_record(arm, [run for run in runs if run.arm is arm]) for arm in arms]
    _print_table(records, headline, profile_name, time.perf_counter() - started)
    if json is not None:
        write_json(Path(json), [asdict(record) for record in records])
        _plot(records, Path(json), curriculum_arms or _default_curriculum_arms(arms, headline))
    return records


# -- planning ---------------------------------------------------------------------------------
def _check_budget(arm: Arm) -> None:
    for key in _flat_keys(arm.overrides):
        if any(key == budget or key.startswith(budget + ".") for budget in BUDGET_KEYS):
            raise ValueError(f"arms[{arm.name}].overrides.{key}: arms must share the budget (iterations, documents, "
                             f"questions, answers, Solver update, evaluation); set it in base_config or the "
                             f"profile, or mark the arm `reference: true`")


def _flat_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and "class_path" not in value:
            keys += _flat_keys(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def _plan(arm: Arm, seed: int, base: Path, profile: Profile, root: Path) -> _Run:
    """The command of one run, with its configuration written next to it (for reproduction)."""
    run_root = root / slug(arm.name, "arm") / f"seed_{seed}"
    layers = [yaml.safe_dump(profile.overrides, sort_keys=True), yaml.safe_dump(arm.overrides, sort_keys=True)]
    digest = hashlib.sha256("\n---\n".join([base.read_text(), *layers, str(seed)]).encode()).hexdigest()
    command = [sys.executable, "-m", "infuser.cli", "fit", "--config", str(base)]
    for index, text in enumerate(layers):
        if text.strip() != "{}":
            command += ["--config", str(run_root.parent / f"seed_{seed}.layer{index}.yaml")]
    command += ["--seed", str(seed), "--run_dir", str(run_root)]
    run = _Run(arm=arm, seed=seed, root=run_root, command=command, fingerprint=digest)
    run.root.parent.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(layers):
        if text.strip() != "{}":
            (run_root.parent / f"seed_{seed}.layer{index}.yaml").write_text(text)
    return run


# -- running ----------------------------------------------------------------------------------
def _state(run: _Run) -> str:
    """``done`` (reuse), ``resume`` (checkpoints of this configuration) or ``fresh``."""
    stamp = run.root / "bench_fingerprint"
    if not stamp.exists() or stamp.read_text().strip() != run.fingerprint:
        if run.root.exists():
            log.info("%s: configuration changed since the cached run; starting over", run.label)
            shutil.rmtree(run.root)
        return "fresh"
    if (run.root / "summary.json").exists():
        return "done"
    return "resume" if any((run.root / "checkpoints").glob("iter_*")) else "fresh"


def _execute(runs: list[_Run], workers: int, threads: int) -> None:
    code = code_digest()
    pending = []
    for run in runs:
        state = _state(run)
        if state == "done":
            print(f"cached    {run.label}", flush=True)
            continue
        pending.append((run, state))
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    active: list[tuple[_Run, subprocess.Popen, float]] = []
    failures = []
    try:
        while pending or active:
            while pending and len(active) < workers:
                run, state = pending.pop(0)
                run.root.mkdir(parents=True, exist_ok=True)
                (run.root / "bench_fingerprint").write_text(run.fingerprint)
                with open(run.root / "bench_code", "a" if state == "resume" else "w") as record:
                    record.write(code + "\n")
                command = run.command + (["--ckpt_path", "last"] if state == "resume" else [])
                print(f"{'resuming' if state == 'resume' else 'running':<9} {run.label}", flush=True)
                with open(run.root / "bench_output.log", "a") as output:
                    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
                active.append((run, process, time.perf_counter()))
            time.sleep(0.5)
            for item in list(active):
                run, process, began = item
                if process.poll() is None:
                    continue
                active.remove(item)
                if process.returncode != 0:
                    failures.append(f"{run.label} (exit {process.returncode}; see {run.root / 'bench_output.log'})")
                    print(f"FAILED    {run.label}", flush=True)
                else:
                    print(f"finished  {run.label} in {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        for _, process, _ in active:  # interrupted: stop the children; their checkpoints let them resume
            process.terminate()
    if failures:
        raise RuntimeError("runs failed: " + "; ".join(failures) + ". Run the benchmark again to resume them.")


# -- results ----------------------------------------------------------------------------------
def _metrics_by_step(run_root: Path) -> dict[int, dict[str, float]]:
    """Every logged metric of a run, by iteration (iteration 0: the first evaluation)."""
    rows: dict[int, dict[str, float]] = {}
    with open(run_root / "logs" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.pop("step")))
            rows.setdefault(step, {}).update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _record(arm: Arm, runs: list[_Run]) -> ArmRecord:
    summaries = [json.loads((run.root / "summary.json").read_text()) for run in runs]
    metrics = [_metrics_by_step(run.root) for run in runs]
    gains = [s["heldout_accuracy_end"] - s["heldout_accuracy_start"] for s in summaries]
    steps = sorted({step for m in metrics for step, row in m.items() if "eval/heldout_accuracy" in row})
    heldout = {str(step): [m[step]["eval/heldout_accuracy"] for m in metrics if "eval/heldout_accuracy" in m.get(step, {})]
               for step in steps}
    curriculum: dict[str, dict[str, float]] = {}
    golden: dict[str, float] = {}
    for step in sorted({step for m in metrics for step in m}):
        values = [m[step]["generator/golden_accuracy"] for m in metrics if "generator/golden_accuracy" in m.get(step, {})]
        if values:
            golden[str(step)] = statistics.fmean(values)
        shares: dict[str, list[float]] = {}
        for m in metrics:
            for key, value in m.get(step, {}).items():
                if key.startswith("curriculum/"):
                    shares.setdefault(key.removeprefix("curriculum/"), []).append(value)
        if shares:
            curriculum[str(step)] = {kind: statistics.fmean(values) for kind, values in sorted(shares.items())}
    return ArmRecord(
        arm=arm.name, seeds=[run.seed for run in runs], heldout_gain_mean=statistics.fmean(gains),
        heldout_gain_std=statistics.stdev(gains) if len(gains) > 1 else 0.0,
        seconds=round(sum(s["seconds_total"] for s in summaries), 1),
        heldout_start_mean=statistics.fmean(s["heldout_accuracy_start"] for s in summaries),
        heldout_end_mean=statistics.fmean(s["heldout_accuracy_end"] for s in summaries),
        target_gain_mean=statistics.fmean(s["target_accuracy_end"] - s["target_accuracy_start"] for s in summaries),
        reference=arm.reference, heldout_by_iteration=heldout, curriculum_by_iteration=curriculum,
        golden_accuracy_by_iteration=golden, code=[_run_code(run) for run in runs],
    )


def code_digest() -> str:
    """A digest of infuser's source files as installed: which code a run is made by."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _run_code(run: _Run) -> str:
    """The digests of the code a run was started and resumed with ("unknown": not recorded)."""
    path = run.root / "bench_code"
    digests = dict.fromkeys(path.read_text().split()) if path.exists() else {}
    return "+".join(digests) or "unknown"


def code_versions(records: list[ArmRecord]) -> set[str]:
    """Every code digest behind the records; more than one means the arms were not run alike."""
    return {digest for record in records for run in record.code for digest in run.split("+")}


@dataclass(frozen=True)
class Verdict:
    """The headline arm against the best non-reference arm."""

    baseline: str
    headline_gain: float
    baseline_gain: float
    standard_error: float  # of the difference of the two means (Welch)

    @property
    def ratio(self) -> float:
        """Headline gain / baseline gain; NaN unless the baseline gained (a ratio of losses means nothing)."""
        return self.headline_gain / self.baseline_gain if self.baseline_gain > 0 else math.nan

    @property
    def beyond_noise(self) -> bool:
        """The headline gained, at least 1.2x the baseline (or the baseline did not gain), and the
        difference of the means exceeds two standard errors."""
        large_enough = self.ratio >= 1.2 if self.baseline_gain > 0 else self.headline_gain > 0
        return large_enough and self.headline_gain - self.baseline_gain > 2 * self.standard_error


def verdict(records: list[ArmRecord], headline: str) -> Verdict | None:
    """How the headline arm compares with the best other non-reference arm (``None``: no other arm)."""
    lead = next(r for r in records if r.arm == headline)
    others = [r for r in records if r.arm != headline and not r.reference]
    if not others:
        return None
    best = max(others, key=lambda r: r.heldout_gain_mean)
    error = math.sqrt(lead.heldout_gain_std**2 / len(lead.seeds) + best.heldout_gain_std**2 / len(best.seeds))
    return Verdict(baseline=best.arm, headline_gain=lead.heldout_gain_mean, baseline_gain=best.heldout_gain_mean,
                   standard_error=error)


def _print_table(records: list[ArmRecord], headline: str, profile: str, seconds: float) -> None:
    width = max(len(r.arm) + (6 if r.reference else 0) for r in records) + 2
    print(f"\ncurriculum benchmark ({profile} profile): held-out accuracy gain over the base, mean ± std over seeds")
    print(f"{'arm':<{width}}{'seeds':>6}{'start':>8}{'end':>8}{'gain':>9}{'± std':>8}{'seconds':>9}")
    for r in records:
        label = r.arm + (" (ref)" if r.reference else "")
        print(f"{label:<{width}}{len(r.seeds):>6}{r.heldout_start_mean:>8.3f}{r.heldout_end_mean:>8.3f}"
              f"{r.heldout_gain_mean:>+9.3f}{r.heldout_gain_std:>8.3f}{r.seconds:>9.0f}")
    result = verdict(records, headline)
    if result is not None:
        print(f"{headline} / best baseline ({result.baseline}): ratio {result.ratio:.2f}, difference "
              f"{result.headline_gain - result.baseline_gain:+.3f} ± {result.standard_error:.3f} (s.e.) -> "
              f"{'beyond' if result.beyond_noise else 'NOT beyond'} seed noise at ratio >= 1.2")
    versions = code_versions(records)
    if len(versions) > 1:
        print(f"WARNING: these runs were made by {len(versions)} versions of infuser's code "
              f"({', '.join(sorted(versions))}; per run in the JSON's `code`): the arms are not compared on "
              f"equal terms. Run again with an empty cache_dir to redo them with the current code.")
    print(f"benchmark wall time {seconds:.0f} s")


def _default_curriculum_arms(arms: list[Arm], headline: str) -> list[str]:
    frozen = [arm.name for arm in arms if arm.overrides.get("loop", {}).get("freeze_generator")]
    return [headline, *frozen[:1]]


def _plot(records: list[ArmRecord], json_path: Path, curriculum_arms: list[str]) -> None:
    """``<json>.heldout.png`` (accuracy against iteration, every arm) and ``<json>.curriculum.png``."""
    plt = pyplot()
    if plt is None:
        return
    stem = json_path.with_suffix("")
    figure, axes = plt.subplots(figsize=(8, 5))
    for record in records:
        steps = sorted(int(s) for s in record.heldout_by_iteration)
        means = [statistics.fmean(record.heldout_by_iteration[str(s)]) for s in steps]
        stds = [statistics.stdev(v) if len(v := record.heldout_by_iteration[str(s)]) > 1 else 0.0 for s in steps]
        style = "--" if record.reference else "-"
        axes.plot(steps, means, style, marker="o", markersize=3, label=record.arm,
                  linewidth=2.5 if record.arm == curriculum_arms[0] else 1.2)
        axes.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.1)
    axes.set_xlabel("outer iteration")
    axes.set_ylabel("held-out accuracy (mean over seeds)")
    axes.set_title("Held-out accuracy on the target distribution")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{stem}.heldout.png", dpi=120)
    plt.close(figure)
    chosen = [r for r in records if r.arm in curriculum_arms]
    kinds = sorted({kind for r in chosen for shares in r.curriculum_by_iteration.values() for kind in shares})
    if not chosen or not kinds:
        return
    panels = [(f"share of '{kind}' questions", {r.arm: {s: shares.get(kind, 0.0) for s, shares in
                                                         r.curriculum_by_iteration.items()} for r in chosen})
              for kind in kinds]
    if any(r.golden_accuracy_by_iteration for r in chosen):
        panels.append(("Generator's golden-answer accuracy", {r.arm: r.golden_accuracy_by_iteration for r in chosen}))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for axis, (title, series) in zip(axes[0], panels):
        for arm, values in series.items():
            steps = sorted(int(s) for s in values)
            axis.plot(steps, [values[str(s)] for s in steps], marker="o", markersize=3, label=arm)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("outer iteration")
        axis.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{stem}.curriculum.png", dpi=120)
    plt.close(figure)
