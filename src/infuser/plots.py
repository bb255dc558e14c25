"""A run's learning curves as one picture: ``infuser plot RUN [RUN ...]``.

A run records its learning in ``logs/metrics.csv``: one row per iteration (row 0: the evaluation
before training), some sixty columns. The figure shows what a reader looks at first:

* accuracy: held-out (solid) and target (dashed), from the evaluations;
* the Solver's reward: on the Generator's questions (solid) and on the target set (dashed);
* the influence of the scored questions: mean, with a band of one standard deviation;
* the curriculum: each question kind's share of the valid drafts (``curriculum/<kind>``, where
  the documents know kinds, as the toy world's do);
* the Generator's questions: the share that parse (valid, dashed) and the share whose golden
  answer is right (solid, where the world can check it);
* seconds per stage: per iteration for one run, per iteration on average for several.

Several runs share every panel, one colour per run. :func:`~infuser.fit.fit` draws its own run
into ``run_dir/plots/`` when it ends. Matplotlib draws off-screen (no display needed) and is
imported only when a figure is drawn.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

FIGURE_NAME = "learning_curves.png"
_NO_DATA = "not in logs/metrics.csv"


class RunDataError(ValueError):
    """A folder that holds no readable run record; names the file."""


@dataclass(frozen=True)
class RunRecord:
    """The metrics of one run by iteration, as logged.

    Attributes:
        name: how the run is labelled in the figure.
        rows: ``{iteration: {metric: value}}``; a metric missing from an iteration is absent.
    """

    name: str
    rows: dict[int, dict[str, float]]

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """Iterations and values of ``metric`` where it was logged."""
        points = [(step, row[metric]) for step, row in sorted(self.rows.items()) if metric in row]
        return [step for step, _ in points], [value for _, value in points]

    def metrics(self, prefix: str) -> list[str]:
        """The logged metrics whose names start with ``prefix``, sorted."""
        return sorted({name for row in self.rows.values() for name in row if name.startswith(prefix)})


def read_run(run_dir: str | Path, name: str | None = None) -> RunRecord:
    """The record of the run in ``run_dir`` (its ``logs/metrics.csv``)."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not Path(run_dir).is_dir():
        raise RunDataError(f"{run_dir}: no such folder")
    if not path.is_file():
        raise RunDataError(f"{path}: no such file; plot a run_dir of `infuser fit` (with the csv logger, "
                           "trainer.loggers: [csv])")
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                step = int(float(row.pop("step")))
                values = {key: float(value) for key, value in row.items() if key and value not in ("", None)}
            except (KeyError, TypeError, ValueError) as error:
                raise RunDataError(f"{path}:{line}: not a row of numbers with a step ({error})") from None
            rows.setdefault(step, {}).update(values)
    if not rows:
        raise RunDataError(f"{path}: no rows yet")
    return RunRecord(name=name or Path(run_dir).resolve().name, rows=rows)


def plot_runs(runs: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Draw the learning curves of ``runs`` into ``output/learning_curves.png``; returns its path.

    ``output`` defaults to ``RUN/plots`` for one run and to ``plots`` for several.
    """
    names = [Path(run).resolve().name for run in runs]
    records = [read_run(run, name if names.count(name) == 1 else str(run)) for run, name in zip(runs, names)]
    folder = Path(output) if output is not None else Path(runs[0]) / "plots" if len(runs) == 1 else Path("plots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FIGURE_NAME
    draw(records).savefig(path, dpi=110)
    return path


def plot_finished_run(run_dir: Path) -> Path | None:
    """:func:`plot_runs` for a run that has just ended; a figure that cannot be drawn is reported,
    not raised: every result of the run is already written, and ``infuser plot`` can retry."""
    try:
        return plot_runs([run_dir])
    except Exception as error:  # noqa: BLE001 - a failed figure must not fail a finished run
        log.warning("could not draw %s: %s: %s; run `infuser plot %s` to retry", run_dir / "plots" / FIGURE_NAME,
                    type(error).__name__, error, run_dir)
        return None


def draw(records: Sequence[RunRecord]):
    """The figure of ``records`` (a ``matplotlib.figure.Figure``, not attached to any window)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 9), layout="constrained")
    axes = figure.subplots(2, 3)
    colours = [f"C{index % 10}" for index in range(len(records))]
    _accuracy(axes[0, 0], records, colours)
    _solver_reward(axes[0, 1], records, colours)
    _influence(axes[0, 2], records, colours)
    _curriculum(axes[1, 0], records, colours)
    _questions(axes[1, 1], records, colours)
    _stage_times(axes[1, 2], records)
    figure.suptitle(_title(records), fontsize=13)
    if len(records) > 1:
        from matplotlib.lines import Line2D

        runs = [Line2D([], [], color=colour, linewidth=3, label=record.name)
                for record, colour in zip(records, colours)]
        figure.legend(handles=runs, loc="outside lower center", ncols=min(len(records), 6), fontsize=10)
    return figure


def _title(records: Sequence[RunRecord]) -> str:
    if len(records) > 1:
        return f"{len(records)} runs: " + ", ".join(record.name for record in records)
    record = records[0]
    _, heldout = record.series("eval/heldout_accuracy")
    _, target = record.series("eval/target_accuracy")
    accuracy = heldout or target
    label = "held-out" if heldout else "target"
    change = f": {label} accuracy {accuracy[0]:.3f} -> {accuracy[-1]:.3f}" if len(accuracy) > 1 else ""
    return f"{record.name}{change} ({max(record.rows)} iterations)"


def _lines(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str],
           metrics: dict[str, tuple[str, str]]) -> bool:
    """One line per run and metric (``metrics``: name -> (line style, label)); whether anything
    was drawn."""
    drawn = False
    for metric, (style, label) in metrics.items():
        shown = False
        for record, colour in zip(records, colours):
            steps, values = record.series(metric)
            if steps:
                axis.plot(steps, values, style, color=colour, marker="o", markersize=3, label=_label(records, label))
                shown = True
        if shown:
            _key(axis, records, style, label)
        drawn |= shown
    return drawn


def _label(records: Sequence[RunRecord], what: str) -> str:
    """A line's legend entry: its metric for one run; for several, the panel's key says the metric
    (:func:`_key`) and the figure's legend the run, so the line itself gets none."""
    return what if len(records) == 1 else f"_{what}"


def _key(axis: Axes, records: Sequence[RunRecord], style: str, label: str) -> None:
    """With several runs, a grey legend entry for what line style ``style`` means in this panel."""
    if len(records) > 1:
        axis.plot([], [], style, color="grey", marker="o", markersize=3, label=label)


def _finish(axis: Axes, title: str, ylabel: str, drawn: bool, legend: bool = True, xlabel: str = "iteration",
            fraction: bool = False, stacked: bool = False) -> None:
    """Titles, grid and legend of a panel; ``fraction``: the values are shares in [0, 1];
    ``stacked``: the panel's series are stacked layers."""
    from matplotlib.ticker import MaxNLocator

    axis.set_title(title)
    if fraction:
        axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if xlabel == "iteration":
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if not drawn:
        axis.text(0.5, 0.5, _NO_DATA, ha="center", va="center", transform=axis.transAxes, color="grey")
    elif legend:
        handles, labels = axis.get_legend_handles_labels()
        if stacked:  # list the layers top first, as they are drawn
            handles, labels = handles[::-1], labels[::-1]
        axis.legend(handles, labels, fontsize=8, ncols=2 if len(labels) > 4 else 1)


def _accuracy(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str]) -> None:
    """Held-out and target accuracy, and each benchmark of ``loop.eval_benchmarks``
    (``eval/<benchmark>/accuracy``, dotted lines)."""
    benchmarks = sorted({metric for record in records for metric in record.metrics("eval/")
                         if metric.count("/") == 2 and metric.endswith("/accuracy")})
    drawn = _lines(axis, records, colours, {"eval/heldout_accuracy": ("-", "held-out"),
                                            "eval/target_accuracy": ("--", "target"),
                                            **{metric: (_BENCHMARK_STYLES[index % len(_BENCHMARK_STYLES)],
                                                        metric.split("/")[1])
                                               for index, metric in enumerate(benchmarks)}})
    _finish(axis, "Solver accuracy (avg@k)", "accuracy", drawn, fraction=True)


_BENCHMARK_STYLES = (":", "-.")


def _solver_reward(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str]) -> None:
    drawn = _lines(axis, records, colours, {"solver/reward": ("-", "generated questions"),
                                            "solver/target_reward": ("--", "target set")})
    _finish(axis, "Solver reward (share of right answers)", "mean reward", drawn, fraction=True)


def _influence(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str]) -> None:
    drawn = False
    for record, colour in zip(records, colours):
        steps, means = record.series("influence/mean")
        if not steps:
            continue
        spreads = [record.rows[step].get("influence/std", 0.0) for step in steps]
        axis.plot(steps, means, "-", color=colour, marker="o", markersize=3, label=_label(records, "mean"))
        axis.fill_between(steps, [m - s for m, s in zip(means, spreads)], [m + s for m, s in zip(means, spreads)],
                          color=colour, alpha=0.15, label=_label(records, "mean ± std"))
        drawn = True
    if drawn:
        axis.axhline(0.0, color="grey", linewidth=0.8)
        _key(axis, records, "-", "mean")
        if len(records) > 1:
            axis.fill_between([], [], [], color="grey", alpha=0.15, label="mean ± std")
    _finish(axis, "Influence of the scored questions", "influence score", drawn)


def _curriculum(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str]) -> None:
    kinds = sorted({metric.split("/", 1)[1] for record in records for metric in record.metrics("curriculum/")})
    drawn = False
    if len(records) == 1 and kinds:
        record = records[0]
        steps = sorted(step for step, row in record.rows.items() if any(f"curriculum/{k}" in row for k in kinds))
        shares = [[record.rows[step].get(f"curriculum/{kind}", 0.0) for step in steps] for kind in kinds]
        axis.stackplot(steps, shares, labels=kinds, colors=[f"C{i % 10}" for i in range(len(kinds))], alpha=0.8)
        drawn = True
    else:
        styles = ["-", "--", ":", "-."]
        for index, kind in enumerate(kinds):
            drawn |= _lines(axis, records, colours, {f"curriculum/{kind}": (styles[index % len(styles)], kind)})
    _finish(axis, "Curriculum: share of each question kind", "share of valid questions", drawn, fraction=True,
            stacked=len(records) == 1)


def _questions(axis: Axes, records: Sequence[RunRecord], colours: Sequence[str]) -> None:
    drawn = _lines(axis, records, colours, {"generator/golden_accuracy": ("-", "golden answer right"),
                                            "generator/valid_rate": ("--", "valid")})
    _finish(axis, "Generator's questions", "share of drafts", drawn, fraction=True)


def _stage_times(axis: Axes, records: Sequence[RunRecord]) -> None:
    # The slowest stage at the bottom of each bar, where its height is easiest to read.
    stages = sorted({metric for record in records for metric in record.metrics("time/")},
                    key=lambda stage: -sum(sum(record.series(stage)[1]) for record in records))
    drawn = bool(stages)
    if len(records) == 1:
        record = records[0]
        steps = sorted(step for step, row in record.rows.items() if any(stage in row for stage in stages))
        bottom = [0.0] * len(steps)
        for index, stage in enumerate(stages):
            seconds = [record.rows[step].get(stage, 0.0) for step in steps]
            axis.bar(steps, seconds, bottom=bottom, color=f"C{index % 10}", label=stage.split("/", 1)[1])
            bottom = [b + s for b, s in zip(bottom, seconds)]
        _headroom(axis, bottom)
        _finish(axis, "Seconds per stage", "seconds", drawn, stacked=True)
        return
    names = [record.name for record in records]
    bottom = [0.0] * len(records)
    for index, stage in enumerate(stages):
        seconds = [_mean(record.series(stage)[1]) for record in records]
        axis.bar(names, seconds, bottom=bottom, color=f"C{index % 10}", label=stage.split("/", 1)[1])
        bottom = [b + s for b, s in zip(bottom, seconds)]
    _headroom(axis, bottom)
    _finish(axis, "Seconds per stage, mean per iteration", "seconds", drawn, xlabel="run", stacked=True)
    axis.tick_params(axis="x", labelrotation=20)


def _headroom(axis: Axes, heights: Sequence[float]) -> None:
    """Room above the tallest bar for the legend of the stages."""
    if heights:
        axis.set_ylim(0, 1.45 * max(heights))


def _mean(values: Sequence[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return sum(finite) / len(finite) if finite else 0.0
