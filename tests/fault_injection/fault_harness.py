"""Helpers of the fault-injection tests: run ``infuser fit`` in a child process, stop it at a named
point, kill it, and compare what runs wrote.

A child is stopped deterministically with the loop's test hook (``INFUSER_HOLD_AT=stage@iteration``,
see :func:`infuser.loop.hold_point`): it announces the hold on stderr and blocks, and the test
sends SIGKILL, which no handler can intercept. (A uniquely named module rather than a conftest, so
imports never pick up another test folder's helpers.)
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
HOLD_TIMEOUT_S = 600  # a generous bound on reaching the hold point on a loaded CI machine

# Wall-clock measurements: they differ between any two runs and are left out of comparisons.
TIMING_PREFIXES = ("time/", "throughput/")


def fit_args(model_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """``infuser fit`` on the toy world shrunk to seconds per iteration (both updates still happen)."""
    return [
        "fit", "--config", str(REPO / "configs" / "toy.yaml"),
        f"--generator.model.name_or_path={model_dir}", f"--solver.model.name_or_path={model_dir}",
        "--loop.iterations=3", "--loop.documents_per_iteration=4", "--loop.questions_per_document=2",
        "--loop.answers_per_question=4", "--loop.target_answers_per_question=4", "--loop.eval_samples=1",
        "--loop.keep_checkpoints=3", "--target_set.init_args.size=8", "--heldout_set.init_args.size=4",
        f"--run_dir={run_dir}", *extra,
    ]


def _environment(hold: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INFUSER_HOLD_AT"}
    env["OMP_NUM_THREADS"] = "1"  # the same thread count in every child: the same float reductions
    if hold is not None:
        env["INFUSER_HOLD_AT"] = hold
    return env


def run_fit(args: list[str], log: Path) -> None:
    """Run ``infuser fit`` in a child process to completion; fail with its log tail otherwise."""
    with open(log, "w") as handle:
        code = subprocess.call([sys.executable, "-m", "infuser.cli", *args], stdout=handle, stderr=subprocess.STDOUT,
                               env=_environment(None), cwd=REPO)
    assert code == 0, f"infuser fit exited with {code}:\n{tail(log)}"


def run_fit_and_kill(args: list[str], hold: str, log: Path) -> None:
    """Run ``infuser fit`` until it holds at ``hold`` (``stage@iteration``), then SIGKILL it."""
    marker = f"infuser: holding at {hold}"
    with open(log, "w") as handle:
        child = subprocess.Popen([sys.executable, "-m", "infuser.cli", *args], stdout=handle,
                                 stderr=subprocess.STDOUT, env=_environment(hold), cwd=REPO)
    try:
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        while marker not in log.read_text(errors="replace"):
            assert child.poll() is None, f"the run ended (code {child.returncode}) before {hold}:\n{tail(log)}"
            assert time.monotonic() < deadline, f"the run did not reach {hold} in {HOLD_TIMEOUT_S} s:\n{tail(log)}"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    """``logs/metrics.csv`` without the wall-clock columns, exactly as written (strings)."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in csv.DictReader(handle)]


def assert_same_run(expected: Path, actual: Path) -> None:
    """Bitwise the same run: metrics (all but wall-clock ones), question logs and final weights."""
    want, got = metric_rows(expected), metric_rows(actual)
    assert [r["step"] for r in got] == [r["step"] for r in want], "metric rows missing or duplicated"
    for w, g in zip(want, got):
        differing = {k: (w[k], g.get(k)) for k in w if w[k] != g.get(k)}
        assert not differing, f"step {w['step']}: metrics differ (expected, resumed): {differing}"
    names = sorted(p.name for p in (expected / "questions").iterdir())
    assert sorted(p.name for p in (actual / "questions").iterdir()) == names
    for name in names:
        assert (actual / "questions" / name).read_bytes() == (expected / "questions" / name).read_bytes(), name
    for role in ("generator", "solver"):
        want_weights = load_file(expected / "final" / role / "model.safetensors")
        got_weights = load_file(actual / "final" / role / "model.safetensors")
        assert want_weights.keys() == got_weights.keys()
        for key, value in want_weights.items():
            assert got_weights[key].equal(value), f"final {role} weight {key} differs"
