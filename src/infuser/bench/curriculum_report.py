"""What ``infuser bench curriculum`` concludes from its runs: the records it writes (``--json``),
the paired comparisons of arms, the headroom gate, the verdict, the printed report and the plots.

Every number here is computed from :class:`ArmRecord` values, which :mod:`infuser.bench.curriculum`
reads out of finished runs; nothing here runs or reads a run.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from infuser.bench.common import Interval, mean_interval, paired_interval, print_table, pyplot

# Paired standard errors by which an oracle arm must beat the frozen arm for the world to have room
# for a curriculum (the headroom gate).
HEADROOM_STANDARD_ERRORS = 3.0



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


def plot(records: list[ArmRecord], json_path: Path, metric: str, headline: str, curriculum_arms: list[str]) -> None:
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
