"""Several processes: shards, an update that keeps every process in step, influence over parameter
shards, and two DDP processes on CPU that draw, score and train exactly as one process does."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from infuser.cli import main
from infuser.distributed import Processes
from infuser.influence.base import InfluenceEstimator, ScoredRollouts
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.influence.tracin import TracInInfluence
from infuser.models import ModelConfig
from infuser.roles.policy import OptimizerConfig, PolicyRole, RoleConfig, UpdateConfig
from infuser.rollout.engine import RolloutBatch, SamplingConfig

REPO = Path(__file__).resolve().parents[1]


def test_shards_are_contiguous_balanced_and_cover_every_item():
    for count in (0, 1, 3, 7, 8):
        shards = [Processes(rank=rank, world_size=3).shard(count) for rank in range(3)]
        assert [i for shard in shards for i in shard] == list(range(count))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert Processes().shard(5) == range(5)  # one process: the trivial shard


# -- the update keeps every process in step ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _BesideABusierProcess(Processes):
    """Rank 1 of two, beside a rank 0 holding three times its rows: every collective answers as if
    rank 0 had sent three times this process's numbers (rows, tokens, micro-batches)."""

    def stack(self, values: torch.Tensor) -> torch.Tensor:
        return torch.stack([values * 3, values])

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return values * 4


def test_a_process_with_fewer_rows_runs_as_many_forward_backward_pairs(tiny_model_dir, monkeypatch):
    """Under DDP every process must run the same number of forward/backward pairs per optimizer
    step and synchronise gradients in the last one only; a process with fewer rows pads with
    placeholder micro-batches, which add exactly nothing to the loss or the gradient."""
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir)),
                        optimizer=OptimizerConfig(lr=1e-3, grad_clip=None),
                        sampling=SamplingConfig(max_new_tokens=6), update=UpdateConfig(micro_batch_size=2))
    torch.manual_seed(0)
    role = PolicyRole(config)
    role.set_up(L.Fabric(accelerator="cpu", devices=1))
    batch = role.rollout(["Question: What is 3 plus 4?\nAnswer:", "Document: 5 times 2 is 10.\n"], 3,
                         torch.Generator().manual_seed(0))
    advantages = torch.tensor([1.0, -0.5, 0.3, 0.7, -1.2, 0.2])  # six rows: three micro-batches here

    totals = role._totals(role.loss_mask(batch), len(batch), 6, 1)[0]
    loss = role.training_step(ScoredRollouts(role._placeholder(1), torch.zeros(1)), totals).loss.loss
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in role.trainable_parameters())
    role.zero_grad(set_to_none=True)

    monkeypatch.setattr(PolicyRole, "processes", property(lambda self: _BesideABusierProcess(rank=1, world_size=2)))
    syncs, forwards = [], []
    role._gradient_sync = lambda sync: (syncs.append(sync), nullcontext())[1]
    training_step = role._micro_batch_forward
    role._micro_batch_forward = lambda rollouts, *args: (forwards.append(bool(rollouts.batch.completion_mask.any())),
                                                        training_step(rollouts, *args))[1]
    stats = role.update(batch, advantages)
    assert stats.optimizer_steps == 1 and stats.rows == 4 * 6
    assert syncs == [False] * 8 + [True]  # the busier process's nine micro-batches, synchronised once
    assert len(forwards) == 9 and forwards.count(False) == 6  # three of its own, six placeholders


# -- influence when every process holds a shard of the parameters --------------------------------------


class _Exchange:
    """The sum of two threads' tensors: the all-reduce of two processes, inside one test process."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=60)
        self.values: list[torch.Tensor | None] = [None, None]

    def sum(self, rank: int, values: torch.Tensor) -> torch.Tensor:
        self.values[rank] = values.clone()
        self.barrier.wait()
        total = self.values[0] + self.values[1]
        self.barrier.wait()  # nobody overwrites a value before both have read it
        return total


@dataclasses.dataclass(frozen=True)
class _ThreadProcess(Processes):
    exchange: _Exchange | None = None

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return self.exchange.sum(self.rank, values)

    def undo_strategy_mean(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient  # no strategy reduced anything: each thread holds its layer's whole gradient


class _TwoLayerSolver:
    """A :class:`~infuser.influence.base.PolicyGradientModel` over ``tanh(x W1) W2`` that trains
    ``parameters``: both layers, or (as one process under a sharding strategy) one of them."""

    def __init__(self, layers: list[nn.Parameter], optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter],
                 processes: Processes) -> None:
        self.layers, self.optimizer, self.parameters, self._processes = layers, optimizer, parameters, processes

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.parameters

    def named_parameters(self):
        return iter([("w1", self.layers[0]), ("w2", self.layers[1])])

    def optimizer_state(self) -> torch.optim.Optimizer:
        return self.optimizer

    def surrogate_loss(self, rollouts: ScoredRollouts) -> torch.Tensor:
        out = (torch.tanh(rollouts.batch.sampling_logps @ self.layers[0]) @ self.layers[1]).sum(-1)
        return (rollouts.advantages * out).mean()

    def micro_batches(self, rollouts: ScoredRollouts) -> list[ScoredRollouts]:
        return [rollouts]

    @property
    def processes(self) -> Processes:
        return self._processes


def _rows(generator: torch.Generator, count: int) -> ScoredRollouts:
    features = torch.randn(count, 5, generator=generator)
    ids = torch.zeros(count, 5, dtype=torch.long)
    batch = RolloutBatch(prompt_ids=ids[:, :1], prompt_mask=ids[:, :1] + 1, completion_ids=ids, completion_mask=ids + 1,
                         sampling_logps=features, truncated=torch.zeros(count, dtype=torch.bool),
                         prompt_index=torch.arange(count), texts=[""] * count)
    return ScoredRollouts(batch, torch.randn(count, generator=generator))


@pytest.mark.parametrize("make", [OptimizerAwareInfluence, lambda: OptimizerAwareInfluence(mode="dot"),
                                  lambda: OptimizerAwareInfluence(fixed_v=True), lambda: TracInInfluence(cosine=True)],
                         ids=["preconditioned_cosine", "dot", "fixed_v", "tracin_cosine"])
def test_influence_over_parameter_shards_equals_influence_over_all(make: Callable[[], InfluenceEstimator]):
    """Each of two processes holds one layer (its shard) and scores the same rollouts; the
    partial dot products and norms are summed across them: the scores are those of one process
    holding both layers. (Two threads stand in for the processes; the sum is their all-reduce.)"""
    generator = torch.Generator().manual_seed(0)
    layers = [nn.Parameter(torch.randn(shape, generator=generator)) for shape in ((5, 4), (4, 3))]
    optimizer = torch.optim.AdamW(layers, lr=1e-2)
    for _ in range(2):  # populate both Adam moments
        optimizer.zero_grad()
        _TwoLayerSolver(layers, optimizer, layers, Processes()).surrogate_loss(_rows(generator, 4)).backward()
        optimizer.step()
    target, candidates = _rows(generator, 6), [_rows(generator, 3) for _ in range(4)]

    def scores(solver: _TwoLayerSolver) -> list[float]:
        estimator = make()
        estimator.prepare(solver, target)
        return estimator.score(solver, candidates).tolist()

    whole = scores(_TwoLayerSolver(layers, optimizer, layers, Processes()))
    exchange, sharded, errors = _Exchange(), [None, None], []

    def run(rank: int) -> None:
        processes = _ThreadProcess(rank=rank, world_size=2, shards_parameters=True, exchange=exchange)
        try:
            sharded[rank] = scores(_TwoLayerSolver(layers, optimizer, [layers[rank]], processes))
        except BaseException as error:  # noqa: BLE001 - reported below; the other thread must not wait
            errors.append(error)
            exchange.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,), daemon=True) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sharded[0] == pytest.approx(whole, rel=1e-5) and sharded[1] == sharded[0]


# -- two DDP processes on CPU against one ----------------------------------------------------------------

_FIT = ["fit", "--config", str(REPO / "configs" / "toy.yaml"), "--trainer.accelerator=cpu",
        "--loop.iterations=2", "--loop.documents_per_iteration=4", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=4",
        # two rows per micro-batch: the processes' shards differ in micro-batches, so padding runs
        "--generator.update.micro_batch_size=2", "--solver.update.micro_batch_size=2"]

# Both runs compute the same quantities from the same rows, but not in the same float32 order: a
# DDP gradient is the mean of two per-process sums (each normalised by half the total) instead of
# one sum, the target gradient is the sum of two partial gradients, micro-batch boundaries and the
# padding widths of the sampling and scoring batches differ. That leaves differences of about 1e-7
# (relative) in iteration 1, which AdamW's step (g / sqrt(v)) carries into iteration 2's weights
# at about 1e-6. Sampled tokens are argmax(log p + hashed Gumbel noise), so such differences change
# a token only at a near-tie (a chance of about 1e-6 per token); the texts are therefore compared
# exactly. The on-policy losses are sums of advantage-weighted ratios of 1 that cancel to ~1e-8,
# rounding noise on both sides, hence the absolute part. Under FSDP a candidate's gradient is also
# a mean of shares times two, and log-probs are scored without prompt sharing (a different
# summation order than the one-process run, which shares prompts): iteration 1's cosine influence
# scores then differ by up to ~1.3e-6 absolute (seen on a score of 0.040), within the same bounds.
RELATIVE, ABSOLUTE = 1e-4, 1e-6
_APPROXIMATE = {"influence", "reward", "advantage"}
# From iteration 2 on, the weights differ by ~1e-6 (above), and two quantities amplify that: a
# cosine influence score near 0 is an absolute ~1e-6 off (seen: 1.5e-6), and DuGRPO divides the
# rewards' deviations by within-document spreads of ~1e-2, which makes the advantages' error
# ~100x the scores' (seen: 9e-5 on 0.09).
_LATER = {"influence": dict(rel=RELATIVE, abs=1e-5), "reward": dict(rel=RELATIVE, abs=1e-5),
          "advantage": dict(rel=2e-3, abs=1e-4)}
# and the Generator's update then carries the advantages' error into its metrics (seen: 1.3e-4 on
# the gradient norm)
_LATER_METRICS = dict(rel=2e-3, abs=ABSOLUTE)


def _records(run_dir: Path, folder: str) -> list[dict]:
    return [json.loads(line) for path in sorted((run_dir / folder).iterdir()) for line in path.read_text().splitlines()]


def _records_of(run_dir: Path, folder: str, iteration: int) -> list[dict]:
    return [json.loads(line) for line in (run_dir / folder / f"iter_{iteration:05d}.jsonl").read_text().splitlines()]


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v and not k.startswith(("time/", "throughput/"))}
                for row in csv.DictReader(handle)]


def _close(a, b, rel: float = RELATIVE, abs: float = ABSOLUTE) -> bool:  # noqa: A002 - pytest.approx's names
    return a == b if a is None or b is None else a == pytest.approx(b, rel=rel, abs=abs, nan_ok=True)


# The Generator and the Solver as two LoRA adapters on one frozen base: DDP wraps the base once per
# role, each role's adapter registered (activated) before its wrapping.
_LORA = ['--generator.model.lora={"r": 4, "alpha": 8}', '--solver.model.lora={"r": 4, "alpha": 8}']
_SHARED_BASE = ["--share_base=true", *_LORA]


# Several optimizer steps per update: the old policy's log-probs are computed first, through the
# strategy wrapper (under FSDP a collective per forward, padded like the micro-batches).
_STEPS = ["--generator.update.mini_batch_size=4", "--solver.update.mini_batch_size=4"]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "layout"), [("ddp", []), ("ddp", _SHARED_BASE), ("fsdp", _STEPS),
                                                  ("fsdp", _LORA)],
                         ids=["ddp", "ddp_shared_base", "fsdp", "fsdp_lora"])
def test_two_processes_draw_score_and_train_as_one(tmp_path, monkeypatch, strategy, layout):
    """Two CPU processes (gloo) against one on the same data. DDP: each process holds the models.
    FSDP (FSDP2 per decoder layer): each holds a shard of every parameter, so sampling runs in
    lockstep and every process differentiates a share of every influence candidate; with LoRA the
    frozen base is sharded too and only the adapters train."""
    monkeypatch.chdir(REPO)
    one, two = tmp_path / "one", tmp_path / "two"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes runs (OMP_NUM_THREADS=1)
    try:
        assert main([*_FIT, *layout, "--trainer.devices=1", f"--run_dir={one}"]) == 0
    finally:
        torch.set_num_threads(threads)
    # the user's command; Fabric starts the second process itself
    command = [sys.executable, "-m", "infuser.cli", *_FIT, *layout, f"--trainer.strategy={strategy}", "--trainer.devices=2",
               f"--run_dir={two}"]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    expected, actual = _records(one, "questions"), _records(two, "questions")
    assert len(actual) == len(expected) == 16 and sum(r["valid"] for r in expected) > 0
    assert any(r["influence"] for r in expected), "no question was scored: the comparison would be vacuous"
    for want, got in zip(expected, actual):
        assert {k: v for k, v in got.items() if k not in _APPROXIMATE} == \
            {k: v for k, v in want.items() if k not in _APPROXIMATE}
        tolerance = {k: {} for k in _APPROXIMATE} if want["iteration"] == 1 else _LATER
        assert all(_close(got[k], want[k], **tolerance[k]) for k in _APPROXIMATE), (got, want)
    samples_one, samples_two = _records(one, "samples"), _records(two, "samples")
    assert [(s["role"], s["prompt"], s["completion"]) for s in samples_two] == \
        [(s["role"], s["prompt"], s["completion"]) for s in samples_one]
    for iteration in (1, 2):  # the samples of each update, iteration by iteration
        got, want = (_records_of(run, "samples", iteration) for run in (two, one))
        tolerance = {} if iteration == 1 else _LATER["advantage"]
        assert all(_close(a["advantage"], b["advantage"], **tolerance) for a, b in zip(got, want, strict=True))
    rows_one, rows_two = _metrics(one), _metrics(two)
    assert [sorted(row) for row in rows_two] == [sorted(row) for row in rows_one]
    for want, got in zip(rows_one, rows_two):
        tolerance = {} if want["step"] == 1 else _LATER_METRICS
        assert {k: v for k, v in got.items() if not _close(v, want[k], **tolerance)} == {}, want["step"]
    assert {"generator/loss", "solver/loss", "solver/grad_norm", "influence/mean"} <= set(rows_two[-1])
    assert json.loads((two / "summary.json").read_text())["iterations"] == 2
    last = torch.load(two / "checkpoints" / "iter_00002.ckpt", weights_only=True)
    for role in ("generator", "solver") if layout in ([], _STEPS) else ():  # exported whole (gathered), as checkpointed
        exported = load_file(two / "final" / role / "model.safetensors")
        assert sorted(exported) == sorted(load_file(one / "final" / role / "model.safetensors"))
        assert all(torch.equal(tensor, last[role][f"model.{key}"]) for key, tensor in exported.items()), role
    if strategy == "fsdp":
        # the checkpoint of iteration 1 (gathered whole) loads back into the shards: iteration 2 again
        resumed = tmp_path / "resumed"
        again = subprocess.run([*command[:-1], f"--run_dir={resumed}",
                                f"--ckpt_path={two / 'checkpoints' / 'iter_00001.ckpt'}"], cwd=REPO,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-4000:]
        assert _records_of(resumed, "questions", 2) == _records_of(two, "questions", 2)
        got, want = _metrics(resumed)[-1], _metrics(two)[-1]
        assert sorted(got) == sorted(want) and all(_close(got[k], want[k], rel=0, abs=0) for k in want)
