"""What the Generator and the Solver have in common: a causal LM trained by clipped policy gradient.

:class:`PolicyRole` is a LightningModule with manual optimisation. It samples rollouts and
performs one RL update from rollouts and rewards that the loop hands it. The forward pass of a
micro-batch is :meth:`training_step`, which the loop marks as a forward method of the Fabric
wrapper so that distributed strategies see (and synchronise) every forward/backward pair.

A role either owns its model or trains its LoRA adapter on a :class:`~infuser.models.SharedBase`
it shares with the other role; the code path is the same, with the role's adapter activated
(:meth:`PolicyRole.activate`) before each use of the model.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from lightning.fabric.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from infuser.config import OptimizerConfig as OptimizerConfig  # re-exported: the configurations live in infuser.config
from infuser.config import RoleConfig
from infuser.config import UpdateConfig as UpdateConfig
from infuser.distributed import Processes, SplitRollouts
from infuser.influence.base import ScoredRollouts
from infuser.models import SharedBase, load_causal_lm, load_tokenizer
from infuser.rl.loss import BatchTotals, PolicyLossOutput, policy_loss
from infuser.rollout.engine import Lockstep, RolloutBatch, SamplingConfig, call_seed, completion_logps, generate
from infuser.sharding import gathered, whole_weights


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
    """What :meth:`PolicyRole.training_step` returns for one micro-batch."""

    loss: PolicyLossOutput
    mask: Tensor  # the loss mask (completion tokens, minus truncated rows when masked)
    entropy: Tensor  # detached per-token entropy


@dataclass
class _FixedLogps:
    """Per-row log-probs computed once before the first step (zero-padded to the batch width)."""

    old: Tensor | None  # the policy before the update; None when there is a single optimizer step
    ref: Tensor | None  # the reference policy; None without a KL term


class PolicyRole(L.LightningModule):
    """A causal LM policy with its own AdamW, updated by clipped policy gradient.

    Args:
        config: the role's model, optimizer, sampling and update settings.
        device: where a 4-bit base is loaded (the process's own device, ``fabric.device``).
        shared: train a LoRA adapter named :attr:`adapter_name` on this shared base instead of
            loading a model of its own.
    """

    adapter_name: ClassVar[str] = "policy"  # the role's adapter on a shared base
    _wrapper: nn.Module | None = None  # the strategy wrapper, once bound

    def __init__(self, config: RoleConfig, device: torch.device | None = None,
                 shared: SharedBase | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.tokenizer = load_tokenizer(config.model)
        self._shared = shared
        self.model = (shared.attach(self.adapter_name, config.model) if shared is not None
                      else load_causal_lm(config.model, device))
        self._micro_batch_forward = self.training_step
        # The KL reference is the base model. With LoRA it is the same weights with the adapter
        # disabled; otherwise a frozen copy, made only when the KL term is on. It is kept out of
        # the module tree on purpose: no optimizer, no checkpoint, no strategy wrapping (a resumed
        # run rebuilds the identical base here before loading its checkpoint).
        reference = None
        if config.update.loss.beta != 0.0 and not _is_peft(self.model):
            reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        object.__setattr__(self, "_reference", reference)
        if _is_peft(self.model):
            self._checkpoint_adapter_only()

    # -- wiring ---------------------------------------------------------------------------------
    def bind(self, wrapped: nn.Module) -> None:
        """Route the forwards of an update (:meth:`training_step`, :meth:`logps_step`) through the
        strategy wrapper returned by ``fabric.setup``, and synchronise gradients through it."""
        wrapped.mark_forward_method("logps_step")
        self._micro_batch_forward = wrapped.training_step
        object.__setattr__(self, "_wrapper", wrapped)  # not a submodule: the wrapper contains this module

    def set_up(self, fabric: L.Fabric) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Hand this role to ``fabric``'s strategy and :meth:`bind` the result; returns the wrapped
        module and the optimizer.

        Under FSDP (:mod:`infuser.sharding`) the strategy replaces the parameters with shards, so
        the optimizer is made afterwards, over the shards. A DDP wrapper registers the parameters
        that require grad when it is made, so the role's adapter is activated first.
        """
        self.activate()
        if isinstance(fabric.strategy, ModelParallelStrategy):
            wrapped = fabric.setup_module(self)
            optimizer = fabric.setup_optimizers(self.configure_optimizers())
            self._fabric_optimizers = [optimizer]  # what LightningModule.optimizers() returns
        else:
            wrapped, optimizer = fabric.setup(self, self.configure_optimizers())
        wrapped.mark_forward_method("training_step")
        self.bind(wrapped)
        return wrapped, optimizer

    def activate(self) -> None:
        """Make this role's adapter the one the shared base runs and trains; no-op on an own model.

        Every method below that runs the model calls it first; it is not undone afterwards (see
        :class:`~infuser.models.SharedBase`).
        """
        if self._shared is not None:
            self._shared.activate(self.adapter_name)

    def export(self, directory: Path) -> None:
        """Save the model (or its LoRA adapter) and tokenizer with ``save_pretrained``, for ``infuser eval``.

        Every process calls it; rank 0 writes. Sharded parameters are gathered into whole tensors
        first (a collective), so the files are those of an unsharded model. On a shared base only
        this role's adapter is written, in the layout of an unshared one (peft puts a named adapter
        in a sub-folder of that name; its files are moved up).
        """
        self.activate()
        whole = whole_weights(self.model) if self.processes.shards_parameters else None
        if not self.processes.is_main:
            return
        if self._shared is None:
            self.model.save_pretrained(directory, state_dict=whole)
        else:
            self.model.save_pretrained(directory, selected_adapters=[self.adapter_name])
            nested = Path(directory) / self.adapter_name
            for item in nested.iterdir():
                item.replace(Path(directory) / item.name)
            nested.rmdir()
        self.tokenizer.save_pretrained(directory)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What this role's optimizer updates: its adapter on a shared base, else what requires grad."""
        if self._shared is not None:
            return self._shared.adapter_parameters(self.adapter_name)
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        return torch.optim.AdamW(self.trainable_parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                 weight_decay=opt.weight_decay)

    def optimizer_state(self) -> torch.optim.Optimizer:
        """The live optimizer (its state is what optimizer-aware influence preconditions with)."""
        optimizer = self.optimizers()
        return getattr(optimizer, "optimizer", optimizer)

    @property
    def processes(self) -> Processes:
        """The processes of the run (one without Fabric): how batches are split and put together."""
        return Processes.of(self._fabric)

    def _checkpoint_adapter_only(self) -> None:
        """Make the state dict of a LoRA role its trainable weights only.

        The frozen base is rebuilt from configuration when a run resumes, so saving it is waste:
        two roles on a shared base would each save (and load) the whole base, and a 4-bit base's
        state dict (bitsandbytes' quantization state) does not even load back strictly. Loading
        therefore does not miss the frozen entries either; a missing adapter weight still fails.
        """
        trainable = {id(p) for p in self.trainable_parameters()}
        owned = frozenset(name for name, p in self.named_parameters() if id(p) in trainable)

        def drop_frozen(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
            for key in [k for k in state if k.startswith(prefix) and k[len(prefix):] not in owned]:
                del state[key]

        def forgive_frozen(module: nn.Module, incompatible) -> None:
            # taken now, not at construction: a shared base gains the other role's adapter later
            entries = itertools.chain(module.named_parameters(remove_duplicate=False),
                                      module.named_buffers(remove_duplicate=False))
            frozen = {name for name, _ in entries} - owned
            incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not _names_one_of(k, frozen)]

        self.register_state_dict_post_hook(drop_frozen)
        self.register_load_state_dict_post_hook(forgive_frozen)

    # -- sampling -------------------------------------------------------------------------------
    def rollout(self, prompts: list[str], num_samples: int, generator: torch.Generator | None = None,
                sampling: SamplingConfig | None = None, prompt_offset: int = 0, lockstep: Lockstep | None = None
                ) -> RolloutBatch:
        self.activate()
        return generate(self.model, self.tokenizer, prompts, sampling or self.config.sampling, num_samples, generator,
                        prompt_offset, lockstep)

    def sample(self, prompts: list[str], num_samples: int, generator: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> SplitRollouts:
        """``num_samples`` completions of every prompt, the prompts split across processes.

        This process samples its contiguous shard of ``prompts`` at their global positions, so the
        processes together draw exactly what one process sampling every prompt draws (see
        :func:`~infuser.rollout.engine.generate`); every process receives every row's text, length
        and truncation flag. A process with an empty shard still takes the call's draw from
        ``generator``, to stay in step with the others. Under sharded parameters each role's model
        is gathered once for the call (:func:`~infuser.sharding.gathered`) and every process runs
        it as often as the others, whatever its rows.
        """
        processes = self.processes
        shard = processes.shard(len(prompts))
        if processes.lockstep is not None:
            with gathered(self.model):
                batch = self.rollout(prompts[shard.start : shard.stop], num_samples, generator, sampling, shard.start,
                                     processes.lockstep)
        elif shard:
            batch = self.rollout(prompts[shard.start : shard.stop], num_samples, generator, sampling, shard.start)
        else:
            call_seed(generator)
            batch = self._placeholder(0)
        lengths = batch.completion_mask.sum(-1).tolist()
        rows = processes.gather(list(zip(batch.texts, lengths, batch.truncated.tolist())))
        return SplitRollouts(batch=batch, prompts=shard, num_samples=num_samples, texts=[text for text, _, _ in rows],
                             lengths=torch.tensor([length for _, length, _ in rows]),
                             truncated=torch.tensor([flag for _, _, flag in rows], dtype=torch.bool))

    # -- the loss -------------------------------------------------------------------------------
    def loss_mask(self, batch: RolloutBatch) -> Tensor:
        """Which completion tokens enter the loss (truncated rows dropped when configured)."""
        mask = batch.completion_mask
        if self.config.update.mask_truncated_completions:
            mask = mask * (~batch.truncated).unsqueeze(-1).to(mask.device, mask.dtype)
        return mask

    def training_step(self, rollouts: ScoredRollouts, totals: BatchTotals, old_logps: Tensor | None = None,
                      ref_logps: Tensor | None = None) -> MicroBatchOutput:
        """Loss of one micro-batch under the current policy (the forward of one accumulation step).

        ``old_logps`` default to the current log-probs, detached (ratio 1: a single step).
        """
        self.activate()
        loss_config = self.config.update.loss
        entropy_grad = loss_config.entropy_coef != 0.0
        logps, entropy = self._completion_logps(self.model, rollouts.batch, with_entropy=True,
                                                entropy_grad=entropy_grad)
        mask = self.loss_mask(rollouts.batch)
        old = logps.detach() if old_logps is None else old_logps
        out = policy_loss(logps, old, rollouts.advantages, mask, loss_config, totals,
                          sampling_logps=rollouts.batch.sampling_logps, ref_logps=ref_logps,
                          entropy=entropy if entropy_grad else None)
        return MicroBatchOutput(loss=out, mask=mask, entropy=entropy.detach())

    def logps_step(self, batch: RolloutBatch, reference: bool = False) -> Tensor:
        """Completion log-probs of ``batch`` under the policy, or with ``reference`` the KL reference:
        the forward of the passes before an update's first step (called without gradient). A
        forward method of the strategy wrapper, like :meth:`training_step`: a strategy that
        gathers sharded parameters in its forward sees it, and every process calls it as often as
        the others (see :meth:`update`)."""
        self.activate()
        with self._reference_policy() if reference else nullcontext(self.model) as model:
            return self._completion_logps(model, batch)[0]

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """On-policy (ratio 1) policy term over ``rollouts``: the quantity influence differentiates.

        Normalised by ``rollouts.totals`` when set (a share of a batch split across processes, see
        :meth:`shared_totals`), else by the rows' own totals. Only the policy-gradient term: no KL,
        entropy bonus or importance weight, which are regularisers of the update rather than the
        signal of the rollouts.
        """
        self.activate()
        batch = rollouts.batch
        logps, _ = self._completion_logps(self.model, batch)
        config = dataclasses.replace(self.config.update.loss, beta=0.0, entropy_coef=0.0)
        return policy_loss(logps, logps.detach(), rollouts.advantages, self.loss_mask(batch), config,
                           rollouts.totals or self._own_totals(batch)).loss

    def micro_batches(self, rollouts: ScoredRollouts) -> list[ScoredRollouts]:
        """``rollouts`` in pieces of at most ``update.micro_batch_size`` rows, each normalised by the
        totals of the whole: the pieces' :meth:`surrogate_loss` values add up to the whole's, and
        so do their gradients. This is how influence bounds its memory by the same setting that
        bounds the update's. Under sharded parameters every process returns as many pieces as the
        busiest one (placeholders that add nothing), since each backward is a collective there.

        Rows that add exactly nothing to the policy term are left out, as in :meth:`update`: a zero
        advantage, or no token in the loss mask. Rows keep their order (a question's answers
        stay together and share their prompt's prefill).
        """
        batch = rollouts.batch
        totals = rollouts.totals or self._own_totals(batch)
        rows = _carrying_gradient(self.loss_mask(batch), rollouts.advantages.detach().cpu()).nonzero().squeeze(-1)
        pieces = rows.split(self.config.update.micro_batch_size) if len(rows) else ()  # split() of nothing: [nothing]
        made = [ScoredRollouts(batch.select(piece), rollouts.advantages[piece], totals) for piece in pieces]
        if self.processes.lockstep is None:
            return made
        # every process differentiates its share of the same rows: as many backwards as the busiest
        count = int(self.processes.stack(torch.tensor(len(made))).max())
        placeholder = ScoredRollouts(self._placeholder(1), torch.zeros(1), totals)
        return made + [placeholder] * (count - len(made))

    def _own_totals(self, batch: RolloutBatch) -> BatchTotals:
        """The normalisers of ``batch`` taken on its own (not as a share of a larger batch)."""
        return BatchTotals(sequences=len(batch), tokens=int(self.loss_mask(batch).sum()),
                           max_completion_length=self._dr_grpo_length(batch))

    def shared_totals(self, batch: RolloutBatch) -> BatchTotals:
        """The totals of the batch whose share on this process is ``batch`` (every process calls this
        with its own share): shares' losses normalised by them have gradients that sum, over the
        processes, to the whole batch's gradient. On one process: ``batch``'s own totals."""
        sizes = self.processes.stack(torch.tensor([len(batch), int(self.loss_mask(batch).sum()),
                                                   self._dr_grpo_length(batch)]))
        return BatchTotals(sequences=int(sizes[:, 0].sum()), tokens=int(sizes[:, 1].sum()),
                           max_completion_length=int(sizes[:, 2].max()))

    # -- the update -----------------------------------------------------------------------------
    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        return self.config.advantage(rewards, groups)

    def update(self, batch: RolloutBatch, advantages: Tensor, generator: torch.Generator | None = None
               ) -> UpdateStats:
        """One RL update (``ppo_epochs`` x mini-batches) on ``batch`` with per-row ``advantages``.

        ``generator`` draws the order of the rows when the update takes several optimizer steps
        (``None``: torch's global stream). The loop passes a stream of this update's own, so the
        order depends on nothing that ran before it: not on whether the other role updated first
        (a frozen Generator draws nothing), and not on how many draws other code made.

        Mini-batches split all rows, so the normalisers are TRL's; but only rows that can carry a
        gradient are forwarded: with no KL or entropy term, a zero advantage contributes exactly
        zero, so those rows cost nothing. Non-finite advantages count as zero (missing).

        Several processes: ``batch`` is this process's share of the batch (the shares in rank
        order are the whole batch) and every process calls ``update``. Mini-batches, normalisers
        and metrics are the whole batch's; every process runs as many forward/backward pairs per
        optimizer step as the busiest one (padding with placeholder micro-batches that add
        nothing), and gradients are averaged once per step, in the last backward. The step is
        the one a single process takes on the whole batch.
        """
        self.activate()
        settings = self.config.update
        processes = self.processes
        mask = self.loss_mask(batch)
        # row bookkeeping stays on the CPU; the tensors it indexes may live on the accelerator
        advantages = advantages.detach().float().cpu()
        advantages = torch.where(torch.isfinite(advantages), advantages, torch.zeros_like(advantages))
        regularised = settings.loss.beta != 0.0 or settings.loss.entropy_coef != 0.0
        active = _carrying_gradient(mask, advantages, regularised)
        shares = processes.stack(torch.tensor([len(batch), int(active.sum()), int(mask.sum())]))
        if int(shares[:, 1].sum()) == 0:
            return UpdateStats(skipped="no rows with a non-zero advantage")
        rows, offset = int(shares[:, 0].sum()), int(shares[: processes.rank, 0].sum())
        mini = min(settings.mini_batch_size or rows, rows)
        steps = settings.ppo_epochs * math.ceil(rows / mini)
        fixed = self._fixed_logps(batch, active.nonzero().squeeze(-1), old=steps > 1)
        optimizer = self.optimizers()
        stats = UpdateStats(rows=int(shares[:, 1].sum()), samples=self._samples(batch, advantages, offset, rows))
        sums = _Sums()
        for _ in range(settings.ppo_epochs):
            order = torch.randperm(rows, generator=generator) if steps > 1 else torch.arange(rows)
            for start in range(0, rows, mini):
                mini_rows = order[start : start + mini]
                here = mini_rows[(mini_rows >= offset) & (mini_rows < offset + len(batch))] - offset
                self._mini_batch_step(batch, advantages, mask, here, len(mini_rows), active, fixed, optimizer, stats,
                                      sums)
        sums = sums.over(processes)
        stats.loss = sums.loss / max(stats.optimizer_steps, 1)
        stats.grad_norm = sums.grad_norm / stats.optimizer_steps if stats.optimizer_steps else float("nan")
        stats.clip_ratio_low = sums.low / max(sums.tokens, 1)
        stats.clip_ratio_high = sums.high / max(sums.tokens, 1)
        stats.clip_ratio_region = stats.clip_ratio_low + stats.clip_ratio_high
        stats.entropy = sums.entropy / max(sums.forwarded_tokens, 1)
        stats.kl = sums.kl / max(sums.forwarded_tokens, 1) if settings.loss.beta != 0.0 else float("nan")
        stats.tokens = int(shares[:, 2].sum())
        stats.learning_rate = float(self.optimizer_state().param_groups[0]["lr"])
        return stats

    def _completion_logps(self, model: nn.Module, batch: RolloutBatch, with_entropy: bool = False,
                          entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
        """Completion log-probs at the sampling temperature. Prompts are shared unless checkpointing,
        or unless the parameters are sharded: prompt sharing takes one forward call or two depending
        on the rows, and every process must make the same calls."""
        share = not self.config.model.gradient_checkpointing and self.processes.lockstep is None
        return completion_logps(model, batch, self.config.sampling.temperature, with_entropy, entropy_grad,
                                share_prompts=share)

    def _dr_grpo_length(self, batch: RolloutBatch) -> int:
        configured = self.config.update.loss.max_completion_length
        return configured or max(self.config.sampling.max_new_tokens, batch.completion_ids.size(1))

    @torch.no_grad()
    def _fixed_logps(self, batch: RolloutBatch, rows: Tensor, old: bool) -> _FixedLogps:
        """Old and reference log-probs of ``rows``, in one no-grad pass per micro-batch, through the
        strategy wrapper; every process runs as many passes as the one with the most rows."""
        beta = self.config.update.loss.beta != 0.0
        if not (old or beta):
            return _FixedLogps(old=None, ref=None)
        result = _FixedLogps(old=torch.zeros_like(batch.sampling_logps) if old else None,
                             ref=torch.zeros_like(batch.sampling_logps) if beta else None)
        size = self.config.update.micro_batch_size
        chunks = [rows[start : start + size] for start in range(0, len(rows), size)]
        passes = int(self.processes.stack(torch.tensor(len(chunks))).max())
        forward = (self._wrapper if self._wrapper is not None else self).logps_step
        for chunk in _padded(chunks, passes):
            sub = batch.select(chunk) if chunk is not None else self._placeholder(1)
            for logps, reference in ((result.old, False), (result.ref, True)):
                if logps is not None:
                    values = forward(sub, reference)
                    if chunk is not None:
                        logps[chunk, : values.size(1)] = values
        return result

    @contextmanager
    def _reference_policy(self) -> Iterator[nn.Module]:
        """The KL reference: the frozen copy, or the LoRA model with its adapter disabled (no copy)."""
        if self._reference is not None:
            yield self._reference.to(next(self.model.parameters()).device)
            return
        with self.model.disable_adapter():
            yield self.model

    def _samples(self, batch: RolloutBatch, advantages: Tensor, offset: int, total: int) -> list[CompletionSample]:
        """This process's share of the completions logged per update: evenly spaced rows of the whole
        batch (``total`` rows; this process's start at ``offset``)."""
        count = min(self.config.update.completions_to_log, total)
        chosen = torch.linspace(0, total - 1, count).round().long().unique().tolist() if count else []
        rows = [row - offset for row in chosen if offset <= row < offset + len(batch)]
        return [CompletionSample(
            prompt=self.tokenizer.decode(batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist()),
            completion=batch.texts[row], advantage=float(advantages[row]),
            tokens=int(batch.completion_mask[row].sum()), truncated=bool(batch.truncated[row]),
        ) for row in rows]

    def _placeholder(self, rows: int) -> RolloutBatch:
        """:meth:`RolloutBatch.placeholder` rows for this role's model."""
        return RolloutBatch.placeholder(rows, self.tokenizer.pad_token_id, next(self.model.parameters()).device)

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
                         mini_size: int, active: Tensor, fixed: _FixedLogps, optimizer, stats: UpdateStats,
                         sums: _Sums) -> None:
        """One optimizer step on a mini-batch of ``mini_size`` rows of the whole batch, of which
        ``mini_rows`` (indices into ``batch``) are this process's."""
        size = self.config.update.micro_batch_size
        forward_rows = mini_rows[active[mini_rows]].sort().values  # a prompt's rows together: shared prefill
        chunks = [forward_rows[start : start + size] for start in range(0, len(forward_rows), size)]
        totals, forwards = self._totals(mask[mini_rows], mini_size, self._dr_grpo_length(batch), len(chunks))
        sums.tokens += totals.tokens
        if forwards == 0:
            return
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for index, chunk in enumerate(_padded(chunks, forwards)):
            rollouts, old, ref = self._micro_batch(batch, advantages, fixed, chunk)
            with self._gradient_sync(index == forwards - 1):
                out = self._micro_batch_forward(rollouts, totals, old, ref)
                self.manual_backward(out.loss.loss)
            step_loss += float(out.loss.loss.detach())
            used = out.mask.bool()
            per_token = out.loss.per_token
            sums.low += int((per_token.low_clipped & used).sum())
            sums.high += int((per_token.high_clipped & used).sum())
            sums.forwarded_tokens += int(used.sum())
            sums.entropy += float((out.entropy * used).sum())
            if per_token.kl is not None:
                sums.kl += float((per_token.kl.detach() * used).sum())
        norm = self._clip_gradients(optimizer)
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
            placeholder = self._placeholder(1)
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
        if self._wrapper is None or sync:
            # not no_backward_sync(enabled=False): Lightning's FSDP2 variant turns synchronisation
            # off on leaving it, which would silence every later backward (influence included)
            return nullcontext()
        return self._fabric.no_backward_sync(self._wrapper, enabled=True)

    def _clip_gradients(self, optimizer) -> float:
        """The global gradient norm before clipping, clipping it to ``grad_clip`` when set (unset, the
        norm is only measured). Through the strategy, so the norm of sharded gradients is the whole's."""
        clip = self.config.optimizer.grad_clip
        max_norm = math.inf if clip is None else clip
        if self._wrapper is not None:
            # a non-finite norm is reported (and the step skipped), not raised
            norm = self._fabric.clip_gradients(self._wrapper, optimizer, max_norm=max_norm, error_if_nonfinite=False)
            return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        return float(torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), max_norm))


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


def _carrying_gradient(mask: Tensor, advantages: Tensor, regularised: bool = False) -> Tensor:
    """Rows that can add to a policy-gradient loss's gradient: some token in the loss ``mask``, and a
    non-zero advantage unless a KL or entropy term (``regularised``) makes every such row count."""
    return (mask.sum(-1) > 0).cpu() & ((advantages != 0) | regularised)


def _padded(items: list[Tensor], count: int) -> list[Tensor | None]:
    """``items`` followed by ``None`` up to ``count`` entries: the placeholders of a process that has
    fewer micro-batches than the busiest one."""
    return [*items, *[None] * (count - len(items))]


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def _names_one_of(key: str, names: set[str]) -> bool:
    """Whether state-dict ``key`` is one of ``names`` (relative to the role), possibly under the
    prefix of a module the role sits in."""
    while key not in names:
        _, dot, key = key.partition(".")
        if not dot:
            return False
    return True
