"""Each loop stage's arithmetic floor: what the model arithmetic of the tokens a stage processed costs
when done as plain full-sequence passes, beside what the stage took.

One ``infuser fit`` runs in this process with two probes, neither of which changes what it
computes: every forward call of either role's model is counted by the stage it ran in (its new
tokens, and whether autograd recorded it, i.e. a backward over it follows), and the seconds
spent inside those calls are summed. After the run the same model shape is timed on plain
batches, a forward without gradients and a forward+backward, giving seconds per token of each;
a stage's floor is ``no-grad tokens x forward cost + grad tokens x forward+backward cost``. The
floor leaves out what no implementation can skip entirely (sampling's per-step work over the KV
cache, grading, the optimizer step), so ``wall / floor`` is an upper bound on what removing
overhead could gain, and ``in forward`` says how much of the wall the forward calls themselves took
(backward passes run outside them).

    python -m benchmarks.stage_floor --config configs/rules.yaml --json stage_floor_rules.json
    python -m benchmarks.stage_floor --config configs/toy.yaml --iterations 3

Both roles of the toy configurations are the same shape (their bundled base), so one calibration
serves both. Measure on an idle machine: the floor and the stages are timed in the same process,
one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

from infuser.cli import main as infuser_main
from infuser.loop import InfuserLoop
from infuser.roles.policy import PolicyRole

ROOT = Path(__file__).resolve().parents[1]


class StageProbe:
    """Counts every model forward by the loop stage it ran in (installed by :meth:`install`)."""

    def __init__(self) -> None:
        self.stage = "setup"
        self.no_grad_tokens: dict[str, int] = defaultdict(int)
        self.grad_tokens: dict[str, int] = defaultdict(int)
        self.forward_seconds: dict[str, float] = defaultdict(float)
        self.models: list[torch.nn.Module] = []
        self._started: list[float] = []

    def install(self) -> None:
        probe, original_stage, original_init = self, InfuserLoop._stage, PolicyRole.__init__

        @contextmanager
        def stage(loop: InfuserLoop, name: str, iteration: int):
            outer, probe.stage = probe.stage, name
            try:
                with original_stage(loop, name, iteration) as timing:
                    yield timing
            finally:
                probe.stage = outer

        def init(role: PolicyRole, *args, **kwargs) -> None:
            original_init(role, *args, **kwargs)
            probe.models.append(role.model)
            role.model.register_forward_pre_hook(probe._before, with_kwargs=True)
            role.model.register_forward_hook(probe._after)

        InfuserLoop._stage = stage  # type: ignore[method-assign]
        PolicyRole.__init__ = init  # type: ignore[method-assign]

    def _before(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        tokens = int(ids.numel()) if ids is not None else int(kwargs["inputs_embeds"].shape[:2].numel())
        (self.grad_tokens if torch.is_grad_enabled() else self.no_grad_tokens)[self.stage] += tokens
        self._started.append(time.perf_counter())

    def _after(self, module, args, output) -> None:
        self.forward_seconds[self.stage] += time.perf_counter() - self._started.pop()


def token_costs(model: torch.nn.Module, vocabulary: int, rows: int, length: int, repeats: int) -> tuple[float, float]:
    """Seconds per token of a plain forward without gradients, and of a forward+backward, on
    ``rows x length`` random tokens (median of ``repeats``)."""
    ids = torch.randint(0, vocabulary, (rows, length))
    forward, both = [], []
    for _ in range(repeats + 1):  # the first of each is a warm-up
        started = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids)
        forward.append(time.perf_counter() - started)
        started = time.perf_counter()
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
        both.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    tokens = rows * length
    return statistics.median(forward[1:]) / tokens, statistics.median(both[1:]) / tokens


def measure(config: str, iterations: int | None, rows: int, length: int, repeats: int,
            overrides: list[str] | None = None) -> dict:
    """Run ``config`` (with ``overrides``, command-line style) under the probe, then calibrate."""
    probe = StageProbe()
    probe.install()
    with tempfile.TemporaryDirectory(prefix="infuser-stage-floor-") as run_dir:
        arguments = ["fit", "--config", config, "--run_dir", run_dir]
        if iterations is not None:
            arguments += ["--loop.iterations", str(iterations)]
        arguments += overrides or []
        started = time.perf_counter()
        infuser_main(arguments)
        wall = time.perf_counter() - started
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    model = probe.models[-1]  # the Solver; the toy configurations' roles share its shape
    forward, forward_backward = token_costs(model, model.config.vocab_size, rows, length, repeats)
    stages = {}
    for stage, seconds in summary["seconds_by_stage"].items():
        no_grad, grad = probe.no_grad_tokens.get(stage, 0), probe.grad_tokens.get(stage, 0)
        floor = no_grad * forward + grad * forward_backward
        stages[stage] = {"seconds": seconds, "floor_seconds": floor, "in_forward_seconds": probe.forward_seconds.get(stage, 0.0),
                         "no_grad_tokens": no_grad, "grad_tokens": grad}
    return {"config": config, "iterations": summary.get("iterations", iterations), "wall": wall,
            "loop": summary["seconds_total"], "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds_per_token": {"forward": forward, "forward_backward": forward_backward,
                                  "calibration": {"rows": rows, "length": length, "repeats": repeats}},
            "stages": stages}


def report(result: dict) -> None:
    loop = result["loop"]
    costs = result["seconds_per_token"]
    print(f"{result['config']}: loop {loop:.1f} s, {result['parameters']:,} parameters, {result['threads']} thread(s); "
          f"floor per token: forward {costs['forward'] * 1e6:.1f} us, forward+backward "
          f"{costs['forward_backward'] * 1e6:.1f} us")
    print(f"  {'stage':<18}{'wall s':>8}{'share':>8}{'in forward s':>14}{'floor s':>9}{'wall/floor':>12}"
          f"{'tokens fwd':>12}{'tokens f+b':>12}")
    for stage, row in sorted(result["stages"].items(), key=lambda item: -item[1]["seconds"]):
        ratio = row["seconds"] / row["floor_seconds"] if row["floor_seconds"] else float("nan")
        print(f"  {stage:<18}{row['seconds']:>8.1f}{row['seconds'] / loop:>8.1%}{row['in_forward_seconds']:>14.1f}"
              f"{row['floor_seconds']:>9.2f}{ratio:>12.1f}{row['no_grad_tokens']:>12,}{row['grad_tokens']:>12,}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/rules.yaml")
    parser.add_argument("--iterations", type=int, help="override loop.iterations (default: the config's)")
    parser.add_argument("--rows", type=int, default=64, help="calibration batch: rows")
    parser.add_argument("--length", type=int, default=64, help="calibration batch: tokens per row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    load_before = os.getloadavg()
    result = measure(args.config, args.iterations, args.rows, args.length, args.repeats)
    result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
