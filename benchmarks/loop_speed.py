"""How long the toy configurations take end to end, and where an iteration's time goes.

Each configuration runs as a user runs it (``infuser fit --config X``, a fresh process, its own
``run_dir``), ``--repeats`` times, alternating configurations so that a change in machine load
touches them all. The table gives, per configuration, the median wall time of the whole process
(imports, model loading and the run), the loop's own ``seconds_total`` and each stage's seconds
from ``summary.json``, with the stage's share of the loop. ``--threads`` runs each configuration
again at other ``trainer.threads`` settings (``config``: as the file says). ``--floor`` adds each
stage's arithmetic floor beside its median (:mod:`benchmarks.stage_floor`, one instrumented run
per configuration at the configuration's own threads, after the timed runs).

    python -m benchmarks.loop_speed --json loop_speed.json
    python -m benchmarks.loop_speed --configs configs/rules.yaml --threads config 2 --repeats 3
    python -m benchmarks.loop_speed --floor --json loop_speed.json      # with each stage's floor

The numbers depend on the machine and on what else runs on it: ``uptime``'s load average before
and after is recorded with them, and a figure is only comparable with one measured beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/rules.yaml", "configs/toy.yaml")


def _run(config: str, threads: str, run_dir: Path) -> dict:
    """One ``infuser fit`` process: its wall seconds and its ``summary.json``."""
    command = [sys.executable, "-m", "infuser.cli", "fit", "--config", config, "--run_dir", str(run_dir)]
    if threads != "config":
        command += ["--trainer.threads", threads]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall": wall, "loop": summary["seconds_total"], "stages": summary["seconds_by_stage"]}


def measure(configs: list[str], threads: list[str], repeats: int, keep: str | None = None) -> dict[str, dict]:
    """Per ``config @ threads``: every run's figures and their medians. The runs' folders are kept
    under ``keep`` (else removed)."""
    runs: dict[str, list[dict]] = {f"{config} @ {count}": [] for config in configs for count in threads}
    with tempfile.TemporaryDirectory(prefix="infuser-loop-speed-") as scratch:
        for repeat in range(repeats):
            for config in configs:
                for count in threads:
                    run_dir = Path(keep or scratch) / f"{Path(config).stem}-{count}-{repeat}"
                    runs[f"{config} @ {count}"].append(_run(config, count, run_dir))
    results = {}
    for name, measured in runs.items():
        stages = {stage: statistics.median(run["stages"][stage] for run in measured) for stage in measured[0]["stages"]}
        results[name] = {"wall_median": statistics.median(run["wall"] for run in measured),
                         "loop_median": statistics.median(run["loop"] for run in measured),
                         "stages_median": stages, "runs": measured}
    return results


def floors(configs: list[str]) -> dict[str, dict]:
    """Per configuration, :mod:`benchmarks.stage_floor`'s figures (a fresh process each)."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="infuser-stage-floor-") as scratch:
        for config in configs:
            output = Path(scratch) / "floor.json"
            subprocess.run([sys.executable, "-m", "benchmarks.stage_floor", "--config", config, "--json", str(output)],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            found[config] = json.loads(output.read_text())
    return found


def report(results: dict[str, dict], floor: dict[str, dict] | None = None) -> None:
    for name, result in results.items():
        loop = result["loop_median"]
        walls = ", ".join(f"{run['wall']:.1f}" for run in result["runs"])
        print(f"\n{name}: wall {result['wall_median']:.1f} s (median of {walls}), loop {loop:.1f} s")
        stage_floors = (floor or {}).get(name.split(" @ ")[0], {}).get("stages", {})
        print(f"  {'stage':<18}{'seconds':>9}{'share':>8}" + (f"{'floor':>9}{'x floor':>9}" if stage_floors else ""))
        for stage, seconds in sorted(result["stages_median"].items(), key=lambda item: -item[1]):
            line = f"  {stage:<18}{seconds:>9.1f}{seconds / loop:>8.1%}"
            if stage_floors:
                least = stage_floors.get(stage, {}).get("floor_seconds", 0.0)
                line += f"{least:>9.2f}" + (f"{seconds / least:>9.1f}" if least else f"{'-':>9}")
            print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", nargs="+", default=["config"],
                        help="trainer.threads settings to run each configuration at (config: as the file says)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep", help="keep the runs' folders under this directory")
    parser.add_argument("--floor", action="store_true", help="add each stage's arithmetic floor (benchmarks.stage_floor)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = measure(args.configs, args.threads, args.repeats, args.keep)
    floor = floors(args.configs) if args.floor else None
    load_after = os.getloadavg()
    report(results, floor)
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "floor": floor, "load_average_before": load_before,
                                               "load_average_after": load_after, "cores": os.cpu_count()},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
