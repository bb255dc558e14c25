"""Several processes as the loop sees them: a contiguous shard of every batch per process, and the
few collectives that put the shards back together.

infuser is data parallel. Every process holds the whole models and runs the whole loop; only the
rows of each batch are split: a process samples, scores and trains on its contiguous shard of the
documents, of the generated questions' answer groups, of the target set and of the evaluation
questions. What is small and needed everywhere (completion texts, rewards, pass rates, influence
scores) is gathered, so every process computes the same advantages, records and metrics; what is
large (token tensors, activations, per-candidate gradients) stays on the process that sampled it.

One code path serves every world size: one process holds the trivial shard (everything) and every
collective is the identity there, so a single-process run computes what it always did.

Under FSDP the rows are split the same way; each process holds a shard of every parameter, which
the strategy gathers in each forward and whose gradient it reduces in each backward. Two things
follow: every process must make the same forward and backward calls (:meth:`Processes.any` keeps
sampling in step, placeholder micro-batches keep updates and gradients in step), and a gradient
over rows of several processes is reduced by the strategy, so influence differentiates a share of
every candidate on every process instead of whole candidates on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run, and the collectives infuser uses.

    Every collective must be called by every process, in the same order.

    Attributes:
        rank: this process's global rank.
        world_size: the number of processes.
        device: where collectives run (NCCL reduces CUDA tensors only).
        shards_parameters: the strategy splits every parameter between the processes (FSDP,
            DeepSpeed ZeRO-3, model parallel): a flat gradient then holds this process's shard
            of the whole, and sums over parameters need :meth:`sum_parameter_shards`.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    shards_parameters: bool = False

    @classmethod
    def of(cls, fabric: L.Fabric | None) -> Processes:
        """The processes of ``fabric`` (launched); one process without it."""
        if fabric is None:
            return cls()
        return cls(rank=fabric.global_rank, world_size=fabric.world_size, device=fabric.device,
                   shards_parameters=_shards_parameters(fabric.strategy))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def shard(self, count: int) -> range:
        """This process's contiguous share of ``count`` items, in rank order; shares differ in size
        by at most one, and are empty when there are fewer items than processes."""
        return range(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)

    def gather(self, items: list[T]) -> list[T]:
        """Every process's ``items`` (picklable), concatenated in rank order."""
        if self.world_size == 1:
            return list(items)
        parts: list[list[T] | None] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def stack(self, values: Tensor) -> Tensor:
        """Every process's ``values`` (of one shape on all), stacked along a new first dimension."""
        if self.world_size == 1:
            return values.unsqueeze(0)
        local = values.to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return torch.stack(parts).to(values.device)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any process."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    @property
    def lockstep(self) -> Processes | None:
        """What keeps forward calls in step across processes (the sampler's
        :class:`~infuser.rollout.engine.Lockstep`, which :meth:`any` implements): needed when the
        strategy gathers sharded parameters in every forward; ``None`` otherwise."""
        return self if self.shards_parameters and self.world_size > 1 else None

    def sum(self, values: Tensor) -> Tensor:
        """The element-wise sum of every process's ``values`` (which may be overwritten with it)."""
        if self.world_size == 1:
            return values
        local = values.to(self.device)
        dist.all_reduce(local)
        return local.to(values.device)

    # Two layouts, one reduction each. Data parallel (every process holds every parameter): a
    # gradient of rows split among the processes is the sum of their parts, and sums over
    # parameters are complete on each process. Sharded parameters: the strategy's backward has
    # reduced the parts already, and each process holds a shard of it, so sums over parameters
    # need the other shards.
    def sum_row_shares(self, values: Tensor) -> Tensor:
        """Complete a gradient of which this process computed its rows' part: summed over the
        processes when each holds every parameter (data parallel); a sharding strategy reduced the
        parts in the backward already (see :meth:`undo_strategy_mean`)."""
        return values if self.shards_parameters else self.sum(values)

    def undo_strategy_mean(self, gradient: Tensor) -> Tensor:
        """A sharding strategy's backward reduces the processes' gradients to their mean (as DDP does
        for an update); times the number of processes (in place), that is the gradient of all their
        rows together. Without such a strategy nothing was reduced: ``gradient`` as it is."""
        return gradient.mul_(self.world_size) if self.shards_parameters and self.world_size > 1 else gradient

    def sum_parameter_shards(self, partials: Tensor) -> Tensor:
        """Complete sums over parameters (dot products, squared norms) computed from this process's
        flat gradients: summed over the processes when each holds a shard of the parameters;
        complete already when each holds them all."""
        return self.sum(partials) if self.shards_parameters else partials


def _shards_parameters(strategy: object) -> bool:
    from lightning.fabric.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(strategy, DeepSpeedStrategy):
        return strategy.zero_stage_3
    return isinstance(strategy, (FSDPStrategy, ModelParallelStrategy))
