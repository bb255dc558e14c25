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
base Generator's drafts) named, the report checks that headroom first: the oracle must beat the
frozen arm by more than three paired standard errors, or no curriculum can be told apart from
any other in this world.
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
from infuser.bench.common import Interval, mean_interval, paired_interval, print_table, pyplot, slug

log = logging.getLogger(__name__)

# Keys that set the budget; an arm overriding any of them would not be an equal-budget comparison.
BUDGET_KEYS = ("loop.iterations", "loop.documents_per_iteration", "loop.questions_per_document",
               "loop.answers_per_question", "loop.target_answers_per_question",
               "loop.generator_steps_per_solver_step", "loop.eval_every", "loop.eval_samples", "loop.eval_sampling",
               "solver.optimizer", "solver.update", "solver.sampling", "heldout_set", "target_set", "documents",
               "seed")

# Paired standard errors by which an oracle arm must beat the frozen arm for the world to have room
# for a curriculum (the headroom gate).
HEADROOM_STANDARD_ERRORS = 3.0


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
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: dict[str, Any] = field(default_factory=dict)
    budget_minutes: float | None = None
    arms: list[str] | None = None


@dataclass
class ArmRecord:
    """One arm's result (``arms`` of the ``--json`` file). ``heldout_*`` fields are of the
    benchmark's ``metric``; lists run over ``seeds``."""

    arm: str
    seeds: list[int]
    heldout_gains: list[float]  # per seed: the metric at the last evaluation minus the first
    heldout_gain_mean: float
    heldout_gain_std: float
    seconds: float  # wall-clock seconds of the arm's runs, summed over seeds
    heldout_start_mean: float
    heldout_end_mean: float
    target_gain_mean: float
    reference: bool
    heldout_by_iteration: dict[str, list[float]]  # iteration -> metric per seed (seeds that evaluated there)
    curriculum_by_iteration: dict[str, dict[str, float]]  # iteration -> kind -> share (mean over seeds)
    golden_accuracy_by_iteration: dict[str, float]  # iteration -> the Generator's golden-answer accuracy
    run_seconds: list[float] = field(default_factory=list)  # per seed: wall-clock seconds of its run (resumes summed)
    first_drafts: list[str] = field(default_factory=list)  # per seed: digest of iteration 1's drafts ("": none)
    paired_vs: dict[str, dict[str, float]] = field(default_factory=dict)  # other arm -> {mean, ci_low, ci_high, n}
    code: list[str] = field(default_factory=list)  # per seed: the code digest(s) its run was made by, "+"-joined

    def gain_by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.heldout_gains))


@dataclass
class Headroom:
    """The headroom gate: does the oracle arm beat the frozen arm by more than
    ``HEADROOM_STANDARD_ERRORS`` paired standard errors of their per-seed gain difference?"""

    oracle: str
    frozen: str
    difference: float  # mean over common seeds of oracle gain - frozen gain
    standard_error: float  # of that mean (NaN with fewer than two common seeds)
    n: int
    passed: bool
    verdict: str


@dataclass
class BenchResult:
    """The ``--json`` file."""

    profile: str
    metric: str
    headline: str
    arms: list[ArmRecord]
    headroom: Headroom | None
    run_seconds_total: float  # every run's wall-clock seconds, summed
    wall_seconds: float  # this invocation, start to end (cached runs cost nothing here)
    workers: int
    budget_minutes: float | None
    within_budget: bool | None  # run_seconds_total / workers <= budget (None: no budget)


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
        oracle, frozen: arms for the headroom gate (an oracle needs a frozen arm): the oracle
            must beat the frozen arm by more than three paired standard errors.
        curriculum_arms: arms whose question-kind mix is plotted over iterations (default: the
            headline, the frozen arm and the oracle).
        workers: runs at a time (processes).
        threads_per_worker: torch threads per run (``OMP_NUM_THREADS``).
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
    records = [_record(arm, [run for run in runs if run.arm is arm], metric) for arm in arms]
    for record in records:
        record.paired_vs = {other.arm: paired_vs(record, other) for other in records if other is not record
                            and set(record.seeds) & set(other.seeds)}
    total = round(sum(seconds for record in records for seconds in record.run_seconds), 1)
    budget = chosen.budget_minutes
    result = BenchResult(profile=profile_name, metric=metric, headline=headline, arms=records,
                         headroom=headroom(records, oracle, frozen) if oracle and frozen else None,
                         run_seconds_total=total, wall_seconds=round(time.perf_counter() - started, 1),
                         workers=workers, budget_minutes=budget,
                         within_budget=None if budget is None else total / workers <= budget * 60)
    report(result)
    if json is not None:
        write_json(Path(json), asdict(result))
        shown = curriculum_arms or _default_curriculum_arms(arms, headline, frozen, oracle)
        _plot(records, Path(json), metric, headline, [name for name in shown if name in {arm.name for arm in arms}])
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


def _record(arm: Arm, runs: list[_Run], metric: str) -> ArmRecord:
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
    )


def _paired_gains(record: ArmRecord, other: ArmRecord) -> tuple[list[float], list[float]]:
    """The two arms' gains on the seeds both ran, in the same order."""
    mine, theirs = record.gain_by_seed(), other.gain_by_seed()
    common = [seed for seed in record.seeds if seed in theirs]
    return [mine[seed] for seed in common], [theirs[seed] for seed in common]


def paired_vs(record: ArmRecord, other: ArmRecord) -> dict[str, float]:
    """``record``'s gain minus ``other``'s, seed by seed over the seeds both ran: the mean and its
    95% t interval (``n``: the number of pairs; with one pair the interval is the point)."""
    mine, theirs = _paired_gains(record, other)
    return {**paired_interval(mine, theirs).as_dict(), "n": len(mine)}


def headroom(records: list[ArmRecord], oracle: str, frozen: str) -> Headroom:
    """The headroom gate on the oracle and frozen arms' records."""
    by_name = {record.arm: record for record in records}
    mine, theirs = _paired_gains(by_name[oracle], by_name[frozen])
    differences = [a - b for a, b in zip(mine, theirs)]
    n = len(differences)
    mean = statistics.fmean(differences) if differences else math.nan
    error = statistics.stdev(differences) / math.sqrt(n) if n > 1 else math.nan
    passed = n > 1 and mean > HEADROOM_STANDARD_ERRORS * error
    if n < 2:
        verdict = (f"undecided: {oracle} and {frozen} share {n} seed(s), the gate needs two or more; until then "
                   f"assume the world has no room for any curriculum")
    else:
        errors = f"{mean / error:.1f}" if error > 0 else ("inf" if mean > 0 else "0")
        verdict = (f"{oracle} - {frozen}: {mean:+.3f} = {errors} paired standard errors over {n} seeds; "
                   + ("the world has room for a curriculum" if passed else
                      f"not above {HEADROOM_STANDARD_ERRORS:g}: the world has no room for any curriculum"))
    return Headroom(oracle=oracle, frozen=frozen, difference=mean, standard_error=error, n=n, passed=passed,
                    verdict=verdict)


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
    """The headline arm against the best non-reference arm, paired over their common seeds."""

    baseline: str
    headline_gain: float
    baseline_gain: float
    difference: Interval  # per-seed headline gain - baseline gain: mean and 95% t interval
    standard_error: float  # of the mean difference (0 with one pair)

    @property
    def ratio(self) -> float:
        """Headline gain / baseline gain; NaN unless the baseline gained (a ratio of losses means nothing)."""
        return self.headline_gain / self.baseline_gain if self.baseline_gain > 0 else math.nan

    @property
    def beyond_noise(self) -> bool:
        """The headline gained, at least 1.2x the baseline (or the baseline did not gain), and the
        95% interval of the paired difference lies above 0."""
        large_enough = self.ratio >= 1.2 if self.baseline_gain > 0 else self.headline_gain > 0
        return large_enough and self.difference.low > 0


def verdict(records: list[ArmRecord], headline: str) -> Verdict | None:
    """How the headline arm compares with the best other non-reference arm that shares a seed with
    it (``None``: no such arm). Gains are means over the common seeds, so both are of the same seeds."""
    lead = next(r for r in records if r.arm == headline)
    others = [r for r in records if r.arm != headline and not r.reference and set(r.seeds) & set(lead.seeds)]
    if not others:
        return None
    pairs = {other.arm: _paired_gains(lead, other) for other in others}
    best = max(others, key=lambda r: statistics.fmean(pairs[r.arm][1]))
    mine, theirs = pairs[best.arm]
    differences = [a - b for a, b in zip(mine, theirs)]
    error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0
    return Verdict(baseline=best.arm, headline_gain=statistics.fmean(mine), baseline_gain=statistics.fmean(theirs),
                   difference=paired_interval(mine, theirs), standard_error=error)


def report(result: BenchResult) -> None:
    """Print the arms, the paired differences against the headline, the gates and the budget."""
    records, headline = result.arms, result.headline
    print(f"\ncurriculum benchmark ({result.profile} profile): gain of {result.metric} over the base, per arm over "
          f"its seeds (mean, std, 95% t interval)")
    rows = []
    for r in records:
        interval = mean_interval(r.heldout_gains)
        rows.append([r.arm + (" (ref)" if r.reference else ""), len(r.seeds), f"{r.heldout_start_mean:.3f}",
                     f"{r.heldout_end_mean:.3f}", f"{r.heldout_gain_mean:+.3f}", f"{r.heldout_gain_std:.3f}",
                     f"[{interval.low:+.3f}, {interval.high:+.3f}]", f"{r.seconds:.0f}"])
    print_table(["arm", "seeds", "start", "end", "gain", "std", "95% CI", "seconds"], rows)
    lead = next(r for r in records if r.arm == headline)
    paired = []
    for other, d in lead.paired_vs.items():
        excludes = Interval(d["mean"], d["ci_low"], d["ci_high"]).excludes_zero
        paired.append([other, int(d["n"]), f"{d['mean']:+.3f}", f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]",
                       ("yes" if excludes else "no") if d["n"] > 1 else "n/a (1 pair)"])
    if paired:
        print(f"\n{headline} minus each arm, seed by seed over the seeds both ran (paired_vs in the JSON)")
        print_table(["arm", "pairs", "difference", "95% CI", "CI excludes 0"], paired)
    compared = verdict(records, headline)
    if compared is not None:
        print(f"{headline} / best baseline ({compared.baseline}): ratio {compared.ratio:.2f}, paired difference "
              f"{compared.difference.mean:+.3f} [{compared.difference.low:+.3f}, {compared.difference.high:+.3f}] -> "
              f"{'beyond' if compared.beyond_noise else 'NOT beyond'} seed noise at ratio >= 1.2")
    _report_first_drafts(records, lead)
    if result.headroom is not None:
        print(f"headroom gate: {'PASSED' if result.headroom.passed else 'FAILED'}: {result.headroom.verdict}")
    versions = code_versions(records)
    if len(versions) > 1:
        print(f"WARNING: these runs were made by {len(versions)} versions of infuser's code "
              f"({', '.join(sorted(versions))}; per run in the JSON's `code`): the arms are not compared on "
              f"equal terms. Run again with an empty cache_dir to redo them with the current code.")
    runs = sum(len(r.seeds) for r in records)
    budget = (f"; budget {result.budget_minutes:g} min: {'within' if result.within_budget else 'OVER'}"
              if result.budget_minutes is not None else "")
    print(f"{runs} runs, {result.run_seconds_total:.0f} s of run time (about "
          f"{result.run_seconds_total / result.workers / 60:.1f} min at {result.workers} workers){budget}; "
          f"this invocation {result.wall_seconds:.0f} s")


def _report_first_drafts(records: list[ArmRecord], lead: ArmRecord) -> None:
    """Name the drafting arms whose first drafts differ from the headline's on a common seed: they
    are not paired with it as the benchmark assumes (expected only for arms that script drafts)."""
    headline, drafts = lead.arm, dict(zip(lead.seeds, lead.first_drafts))
    differing = [r.arm for r in records if r is not lead and any(
        digest and drafts.get(seed) and digest != drafts[seed] for seed, digest in zip(r.seeds, r.first_drafts))]
    if differing:
        print(f"first drafts differ from {headline}'s on a common seed: {', '.join(differing)} (expected for arms "
              f"that script or skip drafts; otherwise these arms are not paired with {headline})")
    else:
        print(f"first drafts: every drafting arm drew {headline}'s first drafts on every seed they share")


def _default_curriculum_arms(arms: list[Arm], headline: str, frozen: str | None, oracle: str | None) -> list[str]:
    if frozen is None:
        frozen = next((arm.name for arm in arms if arm.overrides.get("loop", {}).get("freeze_generator")), None)
    return [name for name in dict.fromkeys((headline, frozen, oracle)) if name is not None]


def _plot(records: list[ArmRecord], json_path: Path, metric: str, headline: str, curriculum_arms: list[str]) -> None:
    """``<json>.heldout.png`` (the metric against iteration, every arm: mean and 95% t band over
    seeds) and ``<json>.curriculum.png`` (the question-kind mix of ``curriculum_arms``)."""
    plt = pyplot()
    if plt is None:
        return
    stem = json_path.with_suffix("")
    # One panel per arm (bands of a few seeds are wide and would hide each other), the headline's
    # mean repeated in every panel as the line to compare with.
    lead = next(r for r in records if r.arm == headline)
    columns = min(3, len(records))
    rows = math.ceil(len(records) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), sharex=True, sharey=True,
                                squeeze=False)
    bounded = all(0 <= v <= 1 for r in records for values in r.heldout_by_iteration.values() for v in values)
    for axis, record in zip(axes.flat, records):
        steps = sorted(int(s) for s in record.heldout_by_iteration)
        intervals = [mean_interval(record.heldout_by_iteration[str(s)]) for s in steps]
        axis.fill_between(steps, [i.low for i in intervals], [i.high for i in intervals], alpha=0.2,
                          label="95% t band")
        axis.plot(steps, [i.mean for i in intervals], marker="o", markersize=3, label="mean over seeds")
        if record is not lead:
            lead_steps = sorted(int(s) for s in lead.heldout_by_iteration)
            axis.plot(lead_steps, [statistics.fmean(lead.heldout_by_iteration[str(s)]) for s in lead_steps], "--",
                      color="grey", linewidth=1, label=f"{lead.arm} (mean)")
        axis.set_title(f"{record.arm}{' (ref)' if record.reference else ''}, {len(record.seeds)} seeds", fontsize=9)
        axis.xaxis.get_major_locator().set_params(integer=True)
        if bounded:
            axis.set_ylim(0, 1)
    for axis in list(axes.flat)[len(records):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("outer iteration")
    for axis in axes[:, 0]:
        axis.set_ylabel(metric, fontsize=8)
    axes.flat[min(1, len(records) - 1)].legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{metric} per evaluated iteration: mean and 95% band over each arm's seeds", fontsize=10)
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
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{stem}.curriculum.png", dpi=120)
    plt.close(figure)
