"""The target-size sweep side by side: one ``infuser bench curriculum`` result per target size (the
profiles ``configs/bench_curriculum_rules_sizes.yaml`` and its ``_size16`` / ``_size8`` / ``_size4``
layers), read back into one table and one figure of each arm's held-out gain against the target
set's size, with the 95% t interval over its seeds, and INFUSER's paired difference to each arm.

The profiles share their world instances and seeds, so the sizes differ in the target set alone.
Nothing is tested across sizes (the protocol in docs/benchmarks.md): the per-size intervals are
reported side by side.

    python -m benchmarks.research.target_size_sweep 64=docs/results/curriculum_rules_size64.json \\
        16=docs/results/curriculum_rules_size16.json 8=... 4=... \\
        --json docs/results/curriculum_rules_sizes.json --plot docs/results/curriculum_rules_sizes.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infuser.artifacts import write_json
from infuser.bench.common import mean_interval, print_table, pyplot


def load(results: dict[int, Path]) -> dict:
    """Per arm and size: the gain with its interval, and INFUSER's paired difference to the arm."""
    sweep: dict[str, dict[str, dict]] = {}
    for size, path in sorted(results.items(), reverse=True):
        report = json.loads(path.read_text())
        headline = next(arm for arm in report["arms"] if arm["arm"] == report["headline"])
        for arm in report["arms"]:
            interval = mean_interval(arm["heldout_gains"])
            sweep.setdefault(arm["arm"], {})[str(size)] = {
                "gain": interval.mean, "ci_low": interval.low, "ci_high": interval.high, "seeds": len(arm["seeds"]),
                "headline_minus_arm": headline["paired_vs"].get(arm["arm"])}
    return sweep


def plot(sweep: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for arm, by_size in sweep.items():
        sizes = sorted(by_size, key=int)
        gains = [by_size[s]["gain"] for s in sizes]
        errors = [[by_size[s]["gain"] - by_size[s]["ci_low"] for s in sizes],
                  [by_size[s]["ci_high"] - by_size[s]["gain"] for s in sizes]]
        axis.errorbar([int(s) for s in sizes], gains, yerr=errors, marker="o", capsize=3, label=arm)
    axis.set_xscale("log", base=2)
    axis.set_xticks([int(s) for s in sorted(next(iter(sweep.values())), key=int)])
    axis.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    axis.set_xlabel("target set size (questions)")
    axis.set_ylabel("held-out exact gain (end - start)")
    axis.set_title("Rule world: gain against target size\n(mean over 10 world instances, 95% t interval)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="SIZE=PATH: a curriculum benchmark's --json at that target size")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--plot", help="draw the figure here")
    args = parser.parse_args(argv)
    results = {}
    for entry in args.results:
        size, separator, path = entry.partition("=")
        if not separator or not size.isdigit():
            parser.error(f"expected SIZE=PATH, got {entry!r}")
        results[int(size)] = Path(path)
    sweep = load(results)
    sizes = sorted({size for by_size in sweep.values() for size in by_size}, key=int, reverse=True)

    def cell(values: dict | None) -> str:
        if values is None:
            return "-"
        low, high = values.get("ci_low"), values.get("ci_high")
        return f"{values.get('mean', values.get('gain')):+.3f} [{low:+.3f}, {high:+.3f}]"

    print_table(["arm", *(f"gain @ {s}" for s in sizes)],
                [[arm, *(cell(by_size.get(s)) for s in sizes)] for arm, by_size in sweep.items()],
                title="held-out exact gain per target size (mean over seeds, 95% t interval)")
    print()
    print_table(["INFUSER minus", *(f"@ {s}" for s in sizes)],
                [[arm, *(cell(by_size[s]["headline_minus_arm"]) if s in by_size else "-" for s in sizes)]
                 for arm, by_size in sweep.items() if any(v["headline_minus_arm"] for v in by_size.values())],
                title="INFUSER minus each arm, paired seed by seed (95% t interval)")
    if args.json:
        write_json(Path(args.json), {"results": {str(size): str(path) for size, path in results.items()},
                                     "sweep": sweep})
    if args.plot:
        plot(sweep, Path(args.plot))


if __name__ == "__main__":
    main()
