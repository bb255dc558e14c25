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

The number reported is the gain of the headline metric (``metric``; by default the sampled
held-out accuracy ``eval/heldout_accuracy``) over the base: its value at the last evaluation minus
the first, on questions of the target distribution that no arm trains on.

Arms are compared seed by seed. Every arm runs a prefix of the profile's seeds (``Arm.seeds``),
and a seed fixes everything an arm does not override: the documents, the target and held-out
sets (the budget check refuses arms that change them) and every random stream, so arms that
share a seed draw the same first drafts from the same base Generator (each record carries a digest
of its first drafts per seed, and the report names arms whose drafts differ). The difference of
two arms' gains on a seed then lacks the variance the arms share (the documents drawn, the
questions sampled), and ``paired_vs`` is the mean of those differences over the seeds both ran,
with its 95% Student-t interval.

A comparison of curricula means something only if a curriculum can matter in the world at hand.
With ``oracle`` (an arm whose drafts are the best questions the world allows) and ``frozen`` (the
base Generator's drafts) named, the report checks that headroom first: over at least three common
seeds, the oracle must beat the frozen arm by more than the t quantile (at n - 1 degrees of freedom)
that 3 standard errors are under a normal, in paired standard errors, or no curriculum can be told
apart from any other in this world.

This module plans, runs and reads the runs; what is concluded from their records (the paired
differences, the gate, the verdict, the table and the plots) is :mod:`infuser.bench.curriculum_report`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
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
from infuser.bench.common import slug
from infuser.bench.curriculum_report import (
    ArmRecord,
    BenchResult,
    curve_area,
    first_reaching,
    headroom,
    paired_vs,
    plot,
    report,
    verdict,
)

log = logging.getLogger(__name__)

# Keys that set the budget; an arm overriding any of them would not be an equal-budget comparison.
BUDGET_KEYS = ("loop.iterations", "loop.documents_per_iteration", "loop.questions_per_document",
               "loop.answers_per_question", "loop.target_answers_per_question",
               "loop.generator_steps_per_solver_step", "loop.eval_every", "loop.eval_samples", "loop.eval_sampling",
               "solver.optimizer", "solver.update", "solver.sampling", "heldout_set", "target_set", "documents",
               "seed")


@dataclass
class Arm:
    """One arm of the comparison.

    Attributes:
        name: the label in the table, the JSON and the plots.
        overrides: ``infuser fit`` arguments layered over the base configuration (registered
            names work as in any YAML, e.g. ``{generator_reward: spice_variance}``).
        reference: a reference, not a competitor (e.g. the Solver trained on the target set, or
            an oracle): shown, but not counted as "the best baseline", and exempt from the budget
            check.
        seeds: run at most this many of the profile's seeds, the first ones (``null``: all), so
            that a costly or secondary arm can run fewer seeds and still pair with every other.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    reference: bool = False
    seeds: int | None = None

    def __post_init__(self) -> None:
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"arms[{self.name}].seeds must be at least 1 (or null: every seed), got {self.seeds}")

    def seeds_of(self, profile: Profile) -> list[int]:
        """The profile's seeds this arm runs."""
        return profile.seeds[: self.seeds] if self.seeds is not None else list(profile.seeds)


@dataclass
class Profile:
    """How much to run: the seeds, and overrides applied to every arm (e.g. fewer iterations).

    Attributes:
        seeds: ``infuser fit --seed`` values; every arm runs them, or the first ``Arm.seeds``.
        overrides: layered over the base configuration for every arm, before the arm's own.
        budget_minutes: the wall time the profile is meant to fit on the machine it is sized
            for; the report compares the runs' seconds, divided over ``workers``, with it.
        arms: the names of the arms this profile runs (``null``: every arm), so that a smoke
            profile can run the few arms a claim rests on; the headline must be one of them.
        seed_keys: dotted ``infuser fit`` keys set to each run's seed, after every other layer
            (e.g. ``documents.init_args.world_seed``): a world instance per seed, shared by the
            arms of that seed, so that the intervals over seeds cover worlds.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: dict[str, Any] = field(default_factory=dict)
    budget_minutes: float | None = None
    arms: list[str] | None = None
    seed_keys: list[str] = field(default_factory=list)



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
    metric: str = "eval/heldout_accuracy",
    reach: float | None = None,
    oracle: str | None = None,
    frozen: str | None = None,
    curriculum_arms: list[str] | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    cache_dir: str = "runs/bench/curriculum",
    json: str | None = None,
) -> BenchResult:
    """Held-out gain of INFUSER against self-evolution baselines, paired over seeds.

    Args:
        arms: the arms; each is the base configuration plus its overrides.
        base_config: the ``infuser fit`` YAML every arm starts from (a path; relative paths are
            taken from the working directory).
        profile: seeds and shared overrides of the full benchmark.
        quick_profile: seeds and shared overrides of ``--quick`` (a smoke-sized run).
        quick: run ``quick_profile`` instead of ``profile`` (``--quick`` alone means true).
        headline: the arm every other is compared with, seed by seed.
        metric: the logged evaluation metric whose gain is reported (``eval/heldout_accuracy``:
            sampled held-out accuracy; a world with exact answers may log a sharper one).
        reach: also report, per seed, the first evaluated iteration at which the metric reaches
            this value (e.g. 0.8; ``null``: not reported). Every record carries the area under
            the metric's curve (``heldout_aucs``) either way.
        oracle, frozen: arms for the headroom gate (an oracle needs a frozen arm): the oracle
            must beat the frozen arm by more than a t quantile of paired standard errors over at
            least three seeds (:func:`~infuser.bench.curriculum_report.headroom`).
        curriculum_arms: arms whose question-kind mix is plotted over iterations (default: the
            headline, the frozen arm and the oracle).
        workers: runs at a time (processes).
        threads_per_worker: torch threads per run (``trainer.threads``, and ``OMP_NUM_THREADS``).
        cache_dir: where runs are kept; finished runs are reused, interrupted ones resumed.
        json: write the result here, and the plots next to it.
    """
    if not arms:
        raise ValueError("arms: list at least one arm")
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arms: names must be unique, got {names}")
    for key, value in (("headline", headline), ("oracle", oracle), ("frozen", frozen)):
        if value is not None and value not in names:
            raise ValueError(f"{key}: {value!r} is not one of the arms {names}")
    if oracle is not None and frozen is None:
        raise ValueError("oracle: the headroom gate compares the oracle with the frozen arm; name it in `frozen`")
    if workers < 1 or threads_per_worker < 1:
        raise ValueError("workers and threads_per_worker must be at least 1")
    base = Path(base_config).resolve()
    if not base.is_file():
        raise ValueError(f"base_config: no such file: {base_config}")
    chosen, profile_name = (quick_profile, "quick") if quick else (profile, "full")
    if not chosen.seeds:
        raise ValueError(f"{profile_name} profile: seeds must not be empty")
    if chosen.arms is not None:
        unknown = [name for name in chosen.arms if name not in names]
        if unknown or headline not in chosen.arms:
            raise ValueError(f"{profile_name} profile: arms must name arms of `arms` and include the headline "
                             f"{headline!r}; got {chosen.arms} (arms: {names})")
        arms = [arm for arm in arms if arm.name in chosen.arms]
        oracle, frozen = (None, None) if oracle not in chosen.arms or frozen not in chosen.arms else (oracle, frozen)
    for arm in arms:
        if not arm.reference:
            _check_budget(arm)
    root = Path(cache_dir) / profile_name
    runs = [_plan(arm, seed, base, chosen, root) for arm in arms for seed in arm.seeds_of(chosen)]
    started = time.perf_counter()
    _execute(runs, workers, threads_per_worker)
    records = [_record(arm, [run for run in runs if run.arm is arm], metric, reach) for arm in arms]
    for record in records:
        record.paired_vs = {other.arm: paired_vs(record, other) for other in records if other is not record
                            and set(record.seeds) & set(other.seeds)}
    total = round(sum(seconds for record in records for seconds in record.run_seconds), 1)
    budget = chosen.budget_minutes
    gate = headroom(records, oracle, frozen) if oracle and frozen else None
    result = BenchResult(profile=profile_name, metric=metric, reach=reach, headline=headline, arms=records,
                         headroom=gate, verdict=verdict(records, headline, gate),
                         run_seconds_total=total, wall_seconds=round(time.perf_counter() - started, 1),
                         workers=workers, budget_minutes=budget,
                         within_budget=None if budget is None else total / workers <= budget * 60)
    report(result)
    if json is not None:
        write_json(Path(json), asdict(result))
        shown = curriculum_arms or _default_curriculum_arms(arms, headline, frozen, oracle)
        plot(records, Path(json), metric, headline, [name for name in shown if name in {arm.name for arm in arms}])
    return result


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
    seeded: dict[str, Any] = {}
    for key in profile.seed_keys:
        *parents, leaf = key.split(".")
        node = seeded
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = seed
    # the seed layer only where a profile has one: the fingerprints (cache keys) of others stay as they were
    layers = [yaml.safe_dump(layer, sort_keys=True) for layer in (profile.overrides, arm.overrides, seeded)
              if layer is not seeded or seeded]
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
                command = [*run.command, "--trainer.threads", str(threads),
                           *(["--ckpt_path", "last"] if state == "resume" else [])]
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
                _add_seconds(run, time.perf_counter() - began)
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
def _add_seconds(run: _Run, seconds: float) -> None:
    """Add a finished process's wall-clock seconds to its run's total (a resumed run has several)."""
    path = run.root / "bench_seconds"
    before = float(path.read_text()) if path.exists() else 0.0
    path.write_text(f"{before + seconds:.1f}\n")


def _run_seconds(run: _Run, summary: dict[str, Any]) -> float:
    """The run's wall-clock seconds as the benchmark timed it (its own training time, for a run
    cached before the benchmark timed runs)."""
    path = run.root / "bench_seconds"
    return float(path.read_text()) if path.exists() else float(summary["seconds_total"])


def _metrics_by_step(run_root: Path) -> dict[int, dict[str, float]]:
    """Every logged metric of a run, by iteration (iteration 0: the first evaluation)."""
    rows: dict[int, dict[str, float]] = {}
    with open(run_root / "logs" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.pop("step")))
            rows.setdefault(step, {}).update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _first_drafts(run_root: Path) -> str:
    """A digest of the texts the Generator drafted in iteration 1 ("" when it drafted none): equal
    across arms that share a seed and the base Generator's sampling."""
    path = run_root / "questions" / "iter_00001.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()] if path.exists() else []
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:12] if texts else ""


def _record(arm: Arm, runs: list[_Run], metric: str, reach: float | None = None) -> ArmRecord:
    summaries = [json.loads((run.root / "summary.json").read_text()) for run in runs]
    metrics = [_metrics_by_step(run.root) for run in runs]
    series = []
    for run, by_step in zip(runs, metrics):
        values = [(step, row[metric]) for step, row in sorted(by_step.items()) if metric in row]
        if not values or values[0][0] != 0:
            raise ValueError(f"metric: {run.label} logged no {metric!r} at the first evaluation (see "
                             f"{run.root / 'logs' / 'metrics.csv'})")
        series.append(values)
    gains = [values[-1][1] - values[0][1] for values in series]
    heldout: dict[str, list[float]] = {}
    for values in series:
        for step, value in values:
            heldout.setdefault(str(step), []).append(value)
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
    run_seconds = [round(_run_seconds(run, summary), 1) for run, summary in zip(runs, summaries)]
    return ArmRecord(
        arm=arm.name, seeds=[run.seed for run in runs], heldout_gains=gains, heldout_gain_mean=statistics.fmean(gains),
        heldout_gain_std=statistics.stdev(gains) if len(gains) > 1 else 0.0, seconds=round(sum(run_seconds), 1),
        heldout_start_mean=statistics.fmean(values[0][1] for values in series),
        heldout_end_mean=statistics.fmean(values[-1][1] for values in series),
        target_gain_mean=statistics.fmean(s["target_accuracy_end"] - s["target_accuracy_start"] for s in summaries),
        reference=arm.reference, heldout_by_iteration=heldout, curriculum_by_iteration=curriculum,
        golden_accuracy_by_iteration=golden, run_seconds=run_seconds,
        first_drafts=[_first_drafts(run.root) for run in runs], code=[_run_code(run) for run in runs],
        heldout_aucs=[curve_area(values) for values in series],
        iterations_to_reach=[] if reach is None else [first_reaching(values, reach) for values in series],
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


def _default_curriculum_arms(arms: list[Arm], headline: str, frozen: str | None, oracle: str | None) -> list[str]:
    if frozen is None:
        frozen = next((arm.name for arm in arms if arm.overrides.get("loop", {}).get("freeze_generator")), None)
    return [name for name in dict.fromkeys((headline, frozen, oracle)) if name is not None]
