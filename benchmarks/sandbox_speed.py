"""What the sandbox costs: per program against a bare interpreter, and programs per second.

    python -m benchmarks.sandbox_speed --json sandbox_speed.json
    python -m benchmarks.sandbox_speed --levels unshare plain --repeats 50 --problems 164

For each isolation level this machine has (``bwrap``, ``unshare``, ``plain``), two measurements:

* **overhead per program**: the median wall time of one :meth:`~infuser.sandbox.base.Executor.run`
  (start to reaped, everything included) of an empty program and of a HumanEval program (problem
  0's canonical solution, its test and ``check``), against ``subprocess.run`` of the same Python
  source: ``python -c`` as a user would type it, and ``python -I -S -c`` (the flags the sandbox
  starts its interpreter with, so the difference is the sandbox alone). The variants take turns
  within each repeat, so load drifting during the run hits them alike;
* **throughput**: HumanEval's canonical solutions through
  :meth:`~infuser.sandbox.base.Executor.run_tests_many` (each against its test, as ``infuser
  eval`` runs them) with ``max_workers`` 1 and 2: programs per second, and that all passed.

The load average before and after is recorded: on a shared machine, say so beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from infuser.eval.data import CodeRow, load_code_benchmark
from infuser.sandbox.base import TestCase
from infuser.sandbox.isolation import LEVELS
from infuser.sandbox.local import LocalExecutor

EMPTY = "pass"


def humaneval_program(row: CodeRow) -> str:
    """A HumanEval problem's canonical solution followed by its test and the ``check`` call."""
    return f"{row.prompt}{row.canonical_solution}\n{row.test}\ncheck({row.entry_point})\n"


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def per_program(executors: dict[str, LocalExecutor], python: str, programs: dict[str, str],
                repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per program for every variant, the variants taking turns."""
    variants: dict[str, Callable[[str], object]] = {
        "python -c": lambda source: subprocess.run([python, "-c", source], capture_output=True, check=True),
        "python -I -S -c": lambda source: subprocess.run([python, "-I", "-S", "-c", source], capture_output=True,
                                                         check=True),
    }
    for level, executor in executors.items():
        variants[f"sandbox {level}"] = executor.run
    results: dict[str, dict[str, float]] = {}
    for name, source in programs.items():
        times: dict[str, list[float]] = {variant: [] for variant in variants}
        for variant, function in variants.items():  # one untimed warm-up each
            function(source)
        for _ in range(repeats):
            for variant, function in variants.items():
                start = time.perf_counter()
                outcome = function(source)
                times[variant].append(time.perf_counter() - start)
                if getattr(outcome, "status", "passed") != "passed":
                    raise SystemExit(f"{variant} did not pass {name}: {outcome}")
        results[name] = {variant: _median_ms(samples) for variant, samples in times.items()}
    return results


def throughput(executor: LocalExecutor, rows: list[CodeRow], workers: int) -> dict[str, float]:
    """HumanEval's canonical solutions against their tests through the pool of ``workers``."""
    executor.max_workers = workers
    cases = [TestCase(row.prompt + row.canonical_solution, (row.test,), row.entry_point) for row in rows]
    start = time.perf_counter()
    runs = executor.run_tests_many(cases)
    seconds = time.perf_counter() - start
    return {"programs": len(cases), "seconds": seconds, "programs_per_s": len(cases) / seconds,
            "passed": sum(run.all_passed for run in runs)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    parser.add_argument("--repeats", type=int, default=30, help="timed runs of each program per variant")
    parser.add_argument("--problems", type=int, default=164, help="HumanEval problems in the throughput run")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    executors = {}
    for level in args.levels:
        try:
            executors[level] = LocalExecutor(isolation=level, timeout_s=30.0)
        except RuntimeError as error:
            print(f"{level}: does not work here ({error}); skipped")
    if not executors:
        raise SystemExit("no isolation level works here")
    python = next(iter(executors.values())).interpreter.executable
    rows = load_code_benchmark().rows
    programs = {"empty program": EMPTY, "HumanEval/0 with its test": humaneval_program(rows[0])}
    overhead = per_program(executors, python, programs, args.repeats)
    pool = {level: {str(w): throughput(executor, rows[: args.problems], w) for w in (1, 2)}
            for level, executor in executors.items()}
    report = {
        "python": python, "version": platform.python_version(), "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "repeats": args.repeats,
        "seccomp": next(iter(executors.values())).seccomp, "per_program_ms": overhead, "throughput": pool,
    }
    for name, medians in overhead.items():
        bare, flags = medians["python -c"], medians["python -I -S -c"]
        print(f"\n| {name} (median of {args.repeats}) | ms | / python -c | / python -I -S -c |")
        print("|---|---:|---:|---:|")
        for variant, ms in medians.items():
            print(f"| `{variant}` | {ms:.1f} | {ms / bare:.2f} | {ms / flags:.2f} |")
    print(f"\n| HumanEval canonical solutions ({len(rows[: args.problems])}) | workers | programs/s | all passed |")
    print("|---|---:|---:|---|")
    for level, by_workers in pool.items():
        for workers, figures in by_workers.items():
            print(f"| sandbox {level} | {workers} | {figures['programs_per_s']:.1f} | "
                  f"{figures['passed'] == figures['programs']} |")
    print(f"\nload average before {load_before[0]:.2f}, after {report['load_average_after'][0]:.2f} "  # type: ignore[index]
          f"({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
