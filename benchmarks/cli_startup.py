"""How long the ``infuser`` command takes to answer: help, the component list, the configuration.

Each command runs as a user runs it (the installed ``infuser`` script, a fresh interpreter, output
discarded) several times, alternating commands so that a change in machine load touches them all;
the table gives the median and the fastest run. Two references frame the numbers: an interpreter
that does nothing, and one that imports torch (what every command paid before parsing became
torch-free, with Lightning, transformers and peft on top).

    python -m benchmarks.cli_startup --json cli_startup.json

The numbers depend on the machine and on what else runs on it; ``uptime``'s load average is
recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "infuser --help": ["--help"],
    "infuser list": ["list"],
    "infuser fit --help": ["fit", "--help"],
    "infuser fit --config configs/toy.yaml --print_config": ["fit", "--config", "configs/toy.yaml", "--print_config"],
    "infuser plot --help": ["plot", "--help"],
    "infuser eval --help": ["eval", "--help"],
}
REFERENCES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def _run(command: list[str]) -> tuple[float, int]:
    """Seconds the command took and its exit status."""
    started = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - started, status


def measure(repeats: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per run of every command and reference (``repeats`` rounds, one run of each per
    round), and each command's exit status (an older version may refuse one: ``infuser list``
    needed a kind)."""
    executable = shutil.which("infuser") or str(Path(sys.executable).with_name("infuser"))
    commands = {name: [executable, *arguments] for name, arguments in COMMANDS.items()} | REFERENCES
    statuses = {name: _run(command)[1] for name, command in commands.items()}  # also warms the file cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            times[name].append(_run(command)[0])
    return times, statuses


def table(times: dict[str, list[float]], statuses: dict[str, int]) -> str:
    width = max(map(len, times))
    lines = [f"{'command':<{width}}  {'median s':>9}  {'fastest s':>9}  exit", "-" * (width + 28)]
    lines += [f"{name:<{width}}  {statistics.median(values):>9.2f}  {min(values):>9.2f}  {statuses[name]:>4}"
              for name, values in times.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Measure, print the table, write the JSON; returns the seconds per command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    parser.add_argument("--json", type=Path, help="also write the times as JSON to this path")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    times, statuses = measure(args.repeats)
    load_after = os.getloadavg()
    print(table(times, statuses))
    print(f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    if args.json is not None:
        summary = {name: {"median_s": statistics.median(v), "fastest_s": min(v), "runs_s": v,
                          "exit_status": statuses[name]} for name, v in times.items()}
        args.json.write_text(json.dumps({"repeats": args.repeats, "cpu_count": os.cpu_count(),
                                         "load_average_before": load_before, "load_average_after": load_after,
                                         "commands": summary}, indent=2) + "\n")
        print(f"written to {args.json}")
    return times


if __name__ == "__main__":
    main()
