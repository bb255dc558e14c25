"""Several processes: shards, an update that keeps every process in step, influence over parameter
shards, and two DDP processes on CPU that draw, score and train exactly as one process does."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
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

from infuser.advantages import DuGRPOAdvantage
from infuser.cli import main
from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig, UpdateConfig
from infuser.distributed import Processes
from infuser.influence.base import InfluenceEstimator
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.influence.tracin import TracInInfluence
from infuser.model_config import ModelConfig
from infuser.rl.update import PolicyUpdate
from infuser.roles.policy import PolicyRole
from infuser.rollout.rows import RolloutBatch, ScoredRollouts

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
    update = PolicyUpdate.set_up(L.Fabric(accelerator="cpu", devices=1), role)
    batch = role.rollout(["Question: What is 3 plus 4?\nAnswer:", "Document: 5 times 2 is 10.\n"], 3,
                         torch.Generator().manual_seed(0))
    advantages = torch.tensor([1.0, -0.5, 0.3, 0.7, -1.2, 0.2])  # six rows: three micro-batches here

    totals = update._totals(role.loss_mask(batch), len(batch), 6, 1)[0]
    loss = role.training_step(ScoredRollouts(role.placeholder(1), torch.zeros(1)), totals).loss.loss
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in role.trainable_parameters())
    role.zero_grad(set_to_none=True)

    update.processes = _BesideABusierProcess(rank=1, world_size=2)
    syncs, forwards = [], []
    monkeypatch.setattr(update, "_gradient_sync", lambda sync: (syncs.append(sync), nullcontext())[1])
    training_step = role.training_step
    role.training_step = lambda rollouts, *args: (forwards.append(bool(rollouts.batch.completion_mask.any())),
                                                 training_step(rollouts, *args))[1]
    stats = update(batch, advantages)
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


# -- two processes on CPU against one ----------------------------------------------------------------

_FIT = ["fit", "--config", str(REPO / "configs" / "toy.yaml"), "--trainer.accelerator=cpu",
        "--loop.iterations=2", "--loop.documents_per_iteration=4", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=4",
        # two rows per micro-batch: the processes' shards differ in micro-batches, so padding runs
        "--generator.update.micro_batch_size=2", "--solver.update.micro_batch_size=2"]

# What must hold on any machine. Both runs compute the same quantities from the same rows, but not
# in the same float32 order: a DDP gradient is the mean of two per-process sums, the target
# gradient the sum of two shares, micro-batch boundaries and padding widths differ, and under FSDP
# a candidate's gradient is a reduce-scatter of shares scored without prompt sharing. The order is
# machine-dependent (kernels, threads), so nothing below rests on a difference seen on one machine:
#
# * Exact: everything decided from sampled tokens and 0/1 grades. Tokens are argmax(log p + hashed
#   Gumbel noise); a float difference of ~1e-7 in log p changes one only at a near-tie (about 1e-6
#   per token), so texts, validity, pass rates, kinds, accuracies, the Solver's Dr.GRPO advantages
#   (of identical 0/1 rewards) and every count are compared exactly.
# * Each run's Generator advantages must be exactly DuGRPO of that run's own rewards (recomputed
#   here). That checks the advantage path without comparing advantages across runs, where DuGRPO's
#   division by within-document spreads of ~1e-2 amplifies the scores' float noise ~50-fold.
# * Influence scores (cosines) within SCORE_FRACTION of the largest score compared. A float32
#   cosine is off by about the relative error of the two gradients it compares; reordering sums of
#   mean-centred (cancelling) rows leaves ~1e-6 on scores of ~0.04, i.e. ~3e-5 of the largest. A
#   wrong reduction (a missing all-reduce, a wrong normaliser, a wrong shard) moves a score by
#   about its own size, ~1 of the largest. 1e-3 sits 30x above the one and 1000x below the other.
# * The Solver's update (identical rows and advantages, another summation order): float32 noise of
#   one gradient, UPDATE_RELATIVE (seen: 2e-7); its loss, a sum of ratio-1 terms that cancel to
#   ~1e-8, also within UPDATE_ABSOLUTE.
# * The Generator's update metrics are linear in its advantages, which differ across runs by
#   delta = max|dA| / max|A| (measured): UPDATE_RELATIVE + CANCELLATION * delta, where CANCELLATION
#   bounds how much rows' gradients cancel in a mean-centred group (seen: 1).
# * Exact evaluation (eval/*_exact): a mean of probabilities, each exp of a float32 sum of
#   log-probs, scored on the Solver after its update, whose weights carry that update's float
#   noise; within UPDATE_RELATIVE of each other like the update's metrics (seen: 3e-6). A shard
#   scored twice or not at all moves the mean by ~1/questions (here 1/6).
# * A clip ratio counts tokens whose ratio left [1 - eps, 1 + eps]; float noise can move a token
#   sitting on the boundary, so one token's share (at most 1 / update_rows) more is allowed.
#
# Iteration 2 is compared from the same starting point: one process resumes from the two-process
# run's checkpoint of iteration 1. Comparing two runs that each trained on their own iteration 1
# would compare AdamW's amplification of iteration 1's float noise instead (early Adam steps are
# sign-like, so a gradient entry near 0 moves its weight by up to lr either way).
SCORE_FRACTION = 1e-3
UPDATE_RELATIVE, UPDATE_ABSOLUTE = 1e-4, 1e-6
CANCELLATION = 100.0
_SCORES = ("influence", "reward")  # the Generator's reward is the influence score
_UPDATE_METRICS = ("loss", "grad_norm", "entropy", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
                   "clip_ratio/region_mean")
_EXACT_METRICS = ("eval/target_exact", "eval/heldout_exact")
_SCORE_METRICS = ("influence/mean", "influence/std", "generator/reward", "generator/reward_std")


def _records_of(run_dir: Path, folder: str, iteration: int) -> list[dict]:
    return [json.loads(line) for line in (run_dir / folder / f"iter_{iteration:05d}.jsonl").read_text().splitlines()]


def _metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """Each logged step's metrics (timings and throughput left out)."""
    with open(run_dir / "logs" / "metrics.csv") as handle:
        rows = [{k: float(v) for k, v in row.items() if v and not k.startswith(("time/", "throughput/"))}
                for row in csv.DictReader(handle)]
    return {int(row["step"]): row for row in rows}


def _same(got: float, want: float, rel: float = 0.0, abs: float = 0.0) -> bool:  # noqa: A002 - pytest.approx's names
    return got == pytest.approx(want, rel=rel, abs=abs, nan_ok=True)


def _assert_own_advantages(questions: list[dict], drafts_per_document: int) -> None:
    """The Generator's recorded advantages are DuGRPO of the run's own recorded rewards, bit for bit."""
    rewards = torch.tensor([math.nan if q["reward"] is None else q["reward"] for q in questions], dtype=torch.float64)
    groups = torch.arange(len(questions)) // drafts_per_document
    recomputed = DuGRPOAdvantage()(rewards, groups).tolist()
    assert [q["advantage"] for q in questions] == recomputed


def _assert_iteration_equal(one: Path, two: Path, iteration: int) -> None:
    """Iteration ``iteration`` of the two-process run ``two`` computes what one process ``one`` did."""
    want, got = _records_of(one, "questions", iteration), _records_of(two, "questions", iteration)
    assert len(got) == len(want) == 8 and sum(r["valid"] for r in want) > 0
    approximate = {*_SCORES, "advantage"}
    for a, b in zip(got, want):
        assert {k: v for k, v in a.items() if k not in approximate} == {k: v for k, v in b.items() if k not in approximate}
    for questions in (want, got):
        _assert_own_advantages(questions, drafts_per_document=2)
    scores = [(a["influence"], b["influence"]) for a, b in zip(got, want) if b["influence"] is not None]
    assert [a["influence"] is None for a in got] == [b["influence"] is None for b in want]
    scale = max(abs(w) for _, w in scores)
    assert scale > 0, "no question was scored: the comparison would be vacuous"
    for name in _SCORES:
        pairs = [(a[name], b[name]) for a, b in zip(got, want) if b[name] is not None]
        assert all(abs(g - w) <= SCORE_FRACTION * scale for g, w in pairs), (name, pairs)

    # the updates' logged completions: the Solver's advantages exactly; the Generator's are its records'
    samples_want, samples_got = _records_of(one, "samples", iteration), _records_of(two, "samples", iteration)
    assert [(s["role"], s["prompt"], s["completion"]) for s in samples_got] == \
        [(s["role"], s["prompt"], s["completion"]) for s in samples_want]
    for samples, questions in ((samples_want, want), (samples_got, got)):
        for sample in (s for s in samples if s["role"] == "generator"):
            assert sample["advantage"] in {q["advantage"] for q in questions if q["text"] == sample["completion"]}
    assert [s["advantage"] for s in samples_got if s["role"] == "solver"] == \
        [s["advantage"] for s in samples_want if s["role"] == "solver"]

    advantages = [(a["advantage"], b["advantage"]) for a, b in zip(got, want)]
    delta = max(abs(g - w) for g, w in advantages) / max(max(abs(w) for _, w in advantages), 1e-30)
    metrics_want, metrics_got = _metrics(one)[iteration], _metrics(two)[iteration]
    assert sorted(metrics_got) == sorted(metrics_want)
    off = {}
    for key, value in metrics_want.items():
        role, _, name = key.partition("/")
        if key in _SCORE_METRICS:
            allowed = dict(abs=SCORE_FRACTION * scale)
        elif key in _EXACT_METRICS:
            allowed = dict(rel=UPDATE_RELATIVE)
        elif role in ("generator", "solver") and name in _UPDATE_METRICS:
            relative = UPDATE_RELATIVE + (CANCELLATION * delta if role == "generator" else 0.0)
            one_token = 1.0 / metrics_want[f"{role}/update_rows"] if name.startswith("clip_ratio") else 0.0
            allowed = dict(rel=relative, abs=UPDATE_ABSOLUTE + one_token)
        else:
            allowed = {}
        if not _same(metrics_got[key], value, **allowed):
            off[key] = (metrics_got[key], value, allowed)
    assert off == {}, f"iteration {iteration}"
    assert {"generator/loss", "solver/loss", "solver/grad_norm", "influence/mean"} <= set(metrics_got)


def _fit_process(*arguments: str, processes: int) -> subprocess.CompletedProcess:
    """``infuser fit`` as the user runs it, one thread per process (Fabric starts the other processes)."""
    command = [sys.executable, "-m", "infuser.cli", *_FIT, *arguments, f"--trainer.devices={processes}"]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


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
    """Two CPU processes (gloo) against one on the same data, iteration by iteration. DDP: each
    process holds the models. FSDP (FSDP2 per decoder layer): each holds a shard of every
    parameter, so sampling runs in lockstep and every process differentiates a share of every
    influence candidate; with LoRA the frozen base is sharded too and only the adapters train."""
    monkeypatch.chdir(REPO)
    one, two, again = tmp_path / "one", tmp_path / "two", tmp_path / "again"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes runs (OMP_NUM_THREADS=1)
    try:
        assert main([*_FIT, *layout, "--loop.iterations=1", "--trainer.devices=1", f"--run_dir={one}"]) == 0
    finally:
        torch.set_num_threads(threads)
    _fit_process(*layout, f"--trainer.strategy={strategy}", f"--run_dir={two}", processes=2)
    _assert_iteration_equal(one, two, 1)

    # iteration 2 from the same weights and optimizer states: one process resumes from the two
    # processes' checkpoint of iteration 1 (an FSDP checkpoint keys optimizer state by name, so
    # that process runs under the same strategy)
    first = two / "checkpoints" / "iter_00001.ckpt"
    single = f"--trainer.strategy={strategy}" if strategy == "fsdp" else "--trainer.strategy=auto"
    _fit_process(*layout, single, f"--run_dir={again}", f"--ckpt_path={first}", processes=1)
    _assert_iteration_equal(again, two, 2)
    assert json.loads((two / "summary.json").read_text())["iterations"] == 2

    last = torch.load(two / "checkpoints" / "iter_00002.ckpt", weights_only=True)
    for role in ("generator", "solver") if layout in ([], _STEPS) else ():  # exported whole (gathered), as checkpointed
        exported = load_file(two / "final" / role / "model.safetensors")
        assert sorted(exported) == sorted(load_file(again / "final" / role / "model.safetensors"))
        assert all(torch.equal(tensor, last[role][f"model.{key}"]) for key, tensor in exported.items()), role
    if strategy == "fsdp":
        # the checkpoint of iteration 1 (gathered whole) loads back into the shards: iteration 2 again, exactly
        resumed = tmp_path / "resumed"
        _fit_process(*layout, f"--trainer.strategy={strategy}", f"--run_dir={resumed}", f"--ckpt_path={first}",
                     processes=2)
        assert _records_of(resumed, "questions", 2) == _records_of(two, "questions", 2)
        got, want = _metrics(resumed)[2], _metrics(two)[2]
        assert sorted(got) == sorted(want) and all(_same(got[k], want[k]) for k in want)
