"""One RL update of a policy: PPO-style epochs over mini-batches, gradient accumulation over
micro-batches, the gradient synchronised once per optimizer step, clipped, then AdamW.

This is the trainer's half of Lightning Fabric's pattern: the module (a
:class:`~infuser.roles.policy.PolicyRole`) gives ``training_step`` (the loss of one micro-batch) and
``configure_optimizers``; :class:`PolicyUpdate` owns Fabric, the strategy-wrapped module and
optimizer, and every step: which rows go into which micro-batch, when gradients are synchronised,
clipping, the optimizer step and the metrics. It reaches the module only through the small
:class:`TrainablePolicy` protocol.

Several processes: each calls the update with its share of the batch (the shares in rank order are
the whole batch). Mini-batches, normalisers and metrics are the whole batch's; every process runs
as many forward/backward pairs per optimizer step as the busiest one (padding with placeholder
micro-batches that add exactly nothing), and gradients are averaged once per step, in the last
backward. The step is the one a single process takes on the whole batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import lightning as L
import torch
from lightning.fabric.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.tensor import DTensor
from transformers import PreTrainedTokenizerBase

from infuser.config import RoleConfig, UpdateConfig
from infuser.distributed import Processes
from infuser.rl.loss import PolicyLossOutput, carrying_gradient
from infuser.rollout.rows import BatchTotals, RolloutBatch, ScoredRollouts


@dataclass(frozen=True)
class CompletionSample:
    """One completion of an update, for eyeballing what the policy writes."""

    prompt: str
    completion: str
    advantage: float
    tokens: int
    truncated: bool


@dataclass
class UpdateStats:
    """Metrics of one update, named as TRL users know them.

    Means over tokens are over the loss tokens of the update (every epoch); ``kl`` and
    ``entropy`` over the rows that entered the loss; ``grad_norm`` is the mean pre-clipping norm
    over optimizer steps.
    """

    skipped: str = ""  # reason when no step was taken
    loss: float = float("nan")
    grad_norm: float = float("nan")
    learning_rate: float = float("nan")
    clip_ratio_low: float = 0.0
    clip_ratio_high: float = 0.0
    clip_ratio_region: float = 0.0
    kl: float = float("nan")
    entropy: float = float("nan")
    rows: int = 0  # rows that entered the loss
    tokens: int = 0  # loss tokens of the batch
    optimizer_steps: int = 0
    non_finite_steps: int = 0  # steps dropped because the gradient norm was NaN or infinite
    samples: list[CompletionSample] = field(default_factory=list)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/loss": self.loss, f"{prefix}/grad_norm": self.grad_norm,
            f"{prefix}/learning_rate": self.learning_rate, f"{prefix}/clip_ratio/low_mean": self.clip_ratio_low,
            f"{prefix}/clip_ratio/high_mean": self.clip_ratio_high,
            f"{prefix}/clip_ratio/region_mean": self.clip_ratio_region, f"{prefix}/kl": self.kl,
            f"{prefix}/entropy": self.entropy, f"{prefix}/update_rows": float(self.rows),
            f"{prefix}/update_skipped": float(bool(self.skipped)),
            f"{prefix}/non_finite_steps": float(self.non_finite_steps),
        }


@dataclass
class MicroBatchOutput:
    """What a policy's ``training_step`` returns for one micro-batch."""

    loss: PolicyLossOutput
    mask: Tensor  # the loss mask (completion tokens, minus truncated rows when masked)
    entropy: Tensor  # detached per-token entropy


class TrainablePolicy(Protocol):
    """What :class:`PolicyUpdate` asks of the module it trains (a ``LightningModule``)."""

    tokenizer: PreTrainedTokenizerBase
    config: RoleConfig  # its ``update`` settings and ``optimizer.grad_clip`` shape the update

    def training_step(self, rollouts: ScoredRollouts, totals: BatchTotals, old_logps: Tensor | None = None,
                      ref_logps: Tensor | None = None) -> MicroBatchOutput:
        """The loss of one micro-batch under the current policy (a forward of the strategy wrapper)."""
        ...

    def logps_step(self, batch: RolloutBatch, reference: bool = False) -> Tensor:
        """Completion log-probs under the policy or the KL reference, without gradient (a forward)."""
        ...

    def configure_optimizers(self) -> torch.optim.Optimizer: ...

    def bind(self, processes: Processes, optimizer: torch.optim.Optimizer,
             autocast: Callable[[], AbstractContextManager]) -> None:
        """Tell the module the run's processes, its live optimizer (influence reads its state) and the
        precision's autocast (for the forwards it runs itself, outside the strategy wrapper)."""
        ...

    def activate(self) -> None:
        """Make this policy's weights the ones the model runs (its adapter on a shared base)."""
        ...

    def loss_mask(self, batch: RolloutBatch) -> Tensor: ...

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def placeholder(self, rows: int) -> RolloutBatch:
        """Rows that run the model without adding to a loss (see :meth:`RolloutBatch.placeholder`)."""
        ...

    def dr_grpo_length(self, batch: RolloutBatch) -> int:
        """The ``dr_grpo`` normaliser of ``batch``."""
        ...


class PolicyUpdate:
    """Clipped policy-gradient updates of one policy, through Fabric.

    Build it with :meth:`set_up`, which hands the policy to Fabric's strategy; then call it once
    per update with this process's rows and their advantages.

    Args:
        policy: the module trained.
        fabric: the run's Fabric (backward, gradient synchronisation, clipping through the strategy).
        module: ``policy`` as the strategy wrapped it (its forwards synchronise across processes).
        optimizer: the policy's optimizer as Fabric wrapped it.
        settings: how an update consumes its batch.
        grad_clip: the maximum global gradient norm (``None``: measured, never clipped).
        processes: the processes of the run.
    """

    def __init__(self, policy: TrainablePolicy, fabric: L.Fabric, module: nn.Module, optimizer: torch.optim.Optimizer,
                 settings: UpdateConfig, grad_clip: float | None, processes: Processes) -> None:
        self.policy, self.fabric, self.module, self.optimizer = policy, fabric, module, optimizer
        self.settings, self.grad_clip, self.processes = settings, grad_clip, processes

    @classmethod
    def set_up(cls, fabric: L.Fabric, policy: TrainablePolicy) -> PolicyUpdate:
        """Hand ``policy`` to ``fabric``'s strategy, with the optimizer its ``configure_optimizers`` makes,
        and return the update that trains it with its configuration's ``update`` settings and
        ``optimizer.grad_clip``. The policy is told the run's processes, its live optimizer and the
        precision's autocast (:meth:`TrainablePolicy.bind`).

        Under FSDP (:mod:`infuser.sharding`) the strategy replaces the parameters with shards, so
        the optimizer is made afterwards, over the shards. A DDP wrapper registers the parameters
        that require grad when it is made, so the policy's adapter is activated first. Both
        forwards an update runs are marked as forwards of the wrapper, so that a distributed
        strategy sees (and synchronises) every one.
        """
        policy.activate()
        if isinstance(fabric.strategy, ModelParallelStrategy):
            module = fabric.setup_module(policy)
            raw = policy.configure_optimizers()
            optimizer = fabric.setup_optimizers(raw)
        else:
            raw = policy.configure_optimizers()
            module, optimizer = fabric.setup(policy, raw)
        module.mark_forward_method("training_step")
        module.mark_forward_method("logps_step")
        processes = Processes.of(fabric)
        policy.bind(processes, raw, fabric.autocast)
        return cls(policy, fabric, module, optimizer, policy.config.update, policy.config.optimizer.grad_clip,
                   processes)

    def __call__(self, batch: RolloutBatch, advantages: Tensor, order: torch.Generator | None = None) -> UpdateStats:
        """One update (``ppo_epochs`` x mini-batches) on ``batch`` with per-row ``advantages``.

        ``order`` is the random stream that orders the rows when the update takes several
        optimizer steps (``None``: torch's global stream). The loop passes a stream of this
        update's own, so the order depends on nothing that ran before it: not on whether the other
        role updated first, and not on how many draws other code made.

        Mini-batches split all rows, so the normalisers are TRL's; but only rows that can carry a
        gradient are forwarded: with no KL or entropy term, a zero advantage contributes exactly
        zero, so those rows cost nothing. Non-finite advantages count as zero (missing).
        """
        self.policy.activate()
        settings, processes = self.settings, self.processes
        mask = self.policy.loss_mask(batch)
        # row bookkeeping stays on the CPU; the tensors it indexes may live on the accelerator
        advantages = advantages.detach().float().cpu()
        advantages = torch.where(torch.isfinite(advantages), advantages, torch.zeros_like(advantages))
        regularised = settings.loss.beta != 0.0 or settings.loss.entropy_coef != 0.0
        active = carrying_gradient(mask, advantages, regularised)
        shares = processes.stack(torch.tensor([len(batch), int(active.sum()), int(mask.sum())]))
        if int(shares[:, 1].sum()) == 0:
            return UpdateStats(skipped="no rows with a non-zero advantage")
        rows, offset = int(shares[:, 0].sum()), int(shares[: processes.rank, 0].sum())
        mini = min(settings.mini_batch_size or rows, rows)
        steps = settings.ppo_epochs * math.ceil(rows / mini)
        fixed = self._fixed_logps(batch, active.nonzero().squeeze(-1), old=steps > 1)
        stats = UpdateStats(rows=int(shares[:, 1].sum()), samples=self._samples(batch, advantages, offset, rows))
        sums = _Sums()
        for _ in range(settings.ppo_epochs):
            permutation = torch.randperm(rows, generator=order) if steps > 1 else torch.arange(rows)
            for start in range(0, rows, mini):
                mini_rows = permutation[start : start + mini]
                here = mini_rows[(mini_rows >= offset) & (mini_rows < offset + len(batch))] - offset
                self._mini_batch_step(batch, advantages, mask, here, len(mini_rows), active, fixed, stats, sums)
        sums = sums.over(processes)
        stats.loss = sums.loss / max(stats.optimizer_steps, 1)
        stats.grad_norm = sums.grad_norm / stats.optimizer_steps if stats.optimizer_steps else float("nan")
        stats.clip_ratio_low = sums.low / max(sums.tokens, 1)
        stats.clip_ratio_high = sums.high / max(sums.tokens, 1)
        stats.clip_ratio_region = stats.clip_ratio_low + stats.clip_ratio_high
        stats.entropy = sums.entropy / max(sums.forwarded_tokens, 1)
        stats.kl = sums.kl / max(sums.forwarded_tokens, 1) if settings.loss.beta != 0.0 else float("nan")
        stats.tokens = int(shares[:, 2].sum())
        stats.learning_rate = float(self.optimizer.param_groups[0]["lr"])
        return stats

    @torch.no_grad()
    def _fixed_logps(self, batch: RolloutBatch, rows: Tensor, old: bool) -> _FixedLogps:
        """Old and reference log-probs of ``rows``, in one no-grad pass per micro-batch, through the
        strategy wrapper; every process runs as many passes as the one with the most rows."""
        beta = self.settings.loss.beta != 0.0
        if not (old or beta):
            return _FixedLogps(old=None, ref=None)
        result = _FixedLogps(old=torch.zeros_like(batch.sampling_logps) if old else None,
                             ref=torch.zeros_like(batch.sampling_logps) if beta else None)
        size = self.settings.micro_batch_size
        chunks = [rows[start : start + size] for start in range(0, len(rows), size)]
        passes = int(self.processes.stack(torch.tensor(len(chunks))).max())
        for chunk in _padded(chunks, passes):
            sub = batch.select(chunk) if chunk is not None else self.policy.placeholder(1)
            for logps, reference in ((result.old, False), (result.ref, True)):
                if logps is not None:
                    with self.fabric.autocast():
                        values = self.module.logps_step(sub, reference)
                    if chunk is not None:
                        logps[chunk, : values.size(1)] = values
        return result

    def _samples(self, batch: RolloutBatch, advantages: Tensor, offset: int, total: int) -> list[CompletionSample]:
        """This process's share of the completions logged per update: evenly spaced rows of the whole
        batch (``total`` rows; this process's start at ``offset``)."""
        count = min(self.settings.completions_to_log, total)
        chosen = torch.linspace(0, total - 1, count).round().long().unique().tolist() if count else []
        rows = [row - offset for row in chosen if offset <= row < offset + len(batch)]
        decode = self.policy.tokenizer.decode
        return [CompletionSample(
            prompt=decode(batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist()),
            completion=batch.texts[row], advantage=float(advantages[row]),
            tokens=int(batch.completion_mask[row].sum()), truncated=bool(batch.truncated[row]),
        ) for row in rows]

    def _totals(self, mask: Tensor, rows: int, length: int, forwards: int) -> tuple[BatchTotals, int]:
        """The normalisers of a mini-batch of ``rows`` rows of the whole batch (``mask``: this
        process's share; ``length``: its ``dr_grpo`` constant; ``forwards``: its micro-batches),
        and the most micro-batches any process has for it, which every process then runs."""
        processes = self.processes
        tokens = int(mask.sum())
        shares = processes.stack(torch.tensor([tokens, length, forwards]))
        world = processes.world_size
        totals = BatchTotals(sequences=mask.size(0), tokens=tokens, max_completion_length=int(shares[:, 1].max()),
                             tokens_per_process=float(shares[:, 0].sum()) / world if world > 1 else None,
                             sequences_per_process=rows / world if world > 1 else None)
        return totals, int(shares[:, 2].max())

    def _mini_batch_step(self, batch: RolloutBatch, advantages: Tensor, mask: Tensor, mini_rows: Tensor,
                         mini_size: int, active: Tensor, fixed: _FixedLogps, stats: UpdateStats, sums: _Sums) -> None:
        """One optimizer step on a mini-batch of ``mini_size`` rows of the whole batch, of which
        ``mini_rows`` (indices into ``batch``) are this process's."""
        size = self.settings.micro_batch_size
        forward_rows = mini_rows[active[mini_rows]].sort().values  # a prompt's rows together: shared prefill
        chunks = [forward_rows[start : start + size] for start in range(0, len(forward_rows), size)]
        totals, forwards = self._totals(mask[mini_rows], mini_size, self.policy.dr_grpo_length(batch), len(chunks))
        sums.tokens += totals.tokens
        if forwards == 0:
            return
        optimizer = self.optimizer
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for index, chunk in enumerate(_padded(chunks, forwards)):
            rollouts, old, ref = self._micro_batch(batch, advantages, fixed, chunk)
            with self._gradient_sync(index == forwards - 1):
                with self.fabric.autocast():
                    out = self.module.training_step(rollouts, totals, old, ref)
                self.fabric.backward(out.loss.loss)
            step_loss += float(out.loss.loss.detach())
            used = out.mask.bool()
            per_token = out.loss.per_token
            sums.low += int((per_token.low_clipped & used).sum())
            sums.high += int((per_token.high_clipped & used).sum())
            sums.forwarded_tokens += int(used.sum())
            sums.entropy += float((out.entropy * used).sum())
            if per_token.kl is not None:
                sums.kl += float((per_token.kl.detach() * used).sum())
        norm = self._clip_gradients()
        if not math.isfinite(norm):
            optimizer.zero_grad(set_to_none=True)
            stats.skipped = "non-finite gradient norm; step skipped"
            stats.non_finite_steps += 1
            return
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stats.optimizer_steps += 1
        sums.grad_norm += norm
        sums.loss += step_loss

    def _micro_batch(self, batch: RolloutBatch, advantages: Tensor, fixed: _FixedLogps, chunk: Tensor | None
                     ) -> tuple[ScoredRollouts, Tensor | None, Tensor | None]:
        """The inputs of one micro-batch: ``chunk``'s rows with their old and reference log-probs, or
        for ``None`` a placeholder row (advantage 0, outside the loss mask) that adds nothing."""
        if chunk is None:
            placeholder = self.policy.placeholder(1)
            ref = placeholder.sampling_logps if fixed.ref is not None else None
            return ScoredRollouts(placeholder, torch.zeros(1)), None, ref
        sub = batch.select(chunk)
        width = sub.completion_ids.size(1)
        old = fixed.old[chunk, :width] if fixed.old is not None else None
        ref = fixed.ref[chunk, :width] if fixed.ref is not None else None
        return ScoredRollouts(sub, advantages[chunk]), old, ref

    def _gradient_sync(self, sync: bool) -> AbstractContextManager:
        """Let the strategy synchronise gradients across processes in this backward (``sync``), or
        defer that (an accumulating micro-batch); the forward and the backward both run inside."""
        if sync:
            # not no_backward_sync(enabled=False): Lightning's FSDP2 variant turns synchronisation
            # off on leaving it, which would silence every later backward (influence included)
            return nullcontext()
        return self.fabric.no_backward_sync(self.module, enabled=True)

    def _clip_gradients(self) -> float:
        """The global gradient norm before clipping, clipping it to ``grad_clip`` when set (unset, the
        norm is only measured). Through the strategy, so the norm of sharded gradients is the whole's."""
        max_norm = math.inf if self.grad_clip is None else self.grad_clip
        # a non-finite norm is reported (and the step skipped), not raised
        norm = self.fabric.clip_gradients(self.module, self.optimizer, max_norm=max_norm, error_if_nonfinite=False)
        return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


@dataclass
class _FixedLogps:
    """Per-row log-probs computed once before the first step (zero-padded to the batch width)."""

    old: Tensor | None  # the policy before the update; None when there is a single optimizer step
    ref: Tensor | None  # the reference policy; None without a KL term


@dataclass
class _Sums:
    """Running totals of one update, turned into :class:`UpdateStats` means at the end."""

    loss: float = 0.0
    grad_norm: float = 0.0
    low: int = 0
    high: int = 0
    tokens: int = 0  # loss tokens of every mini-batch (the clip-ratio denominator)
    forwarded_tokens: int = 0  # loss tokens of the rows that were forwarded
    entropy: float = 0.0
    kl: float = 0.0

    def over(self, processes: Processes) -> _Sums:
        """The totals of every process. The loss is the mean of the processes' shares: the loss whose
        gradient their averaged gradients are. The gradient norm is already the same on all."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "grad_norm"]
        summed = processes.sum(torch.tensor([float(getattr(self, name)) for name in names], dtype=torch.float64))
        values = {name: type(getattr(self, name))(value) for name, value in zip(names, summed.tolist())}
        values["loss"] /= processes.world_size
        return dataclasses.replace(self, **values)


def _padded(items: list[Tensor], count: int) -> list[Tensor | None]:
    """``items`` followed by ``None`` up to ``count`` entries: the placeholders of a process that has
    fewer micro-batches than the busiest one."""
    return [*items, *[None] * (count - len(items))]
