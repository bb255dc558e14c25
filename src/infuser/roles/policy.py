"""What the Generator and the Solver have in common: a causal LM trained by clipped policy gradient.

:class:`PolicyRole` is a LightningModule with manual optimisation. It samples rollouts and
performs one RL update from rollouts and rewards that the loop hands it. The forward pass of a
micro-batch is :meth:`training_step`, which the loop marks as a forward method of the Fabric
wrapper so that distributed strategies see (and synchronise) every forward/backward pair.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from infuser.influence.base import ScoredRollouts
from infuser.models import ModelConfig, load_causal_lm, load_tokenizer
from infuser.rl.advantages import AdvantageEstimator, MeanCentredAdvantage
from infuser.rl.loss import BatchTotals, PolicyLossConfig, PolicyLossOutput, policy_loss
from infuser.rollout.engine import RolloutBatch, SamplingConfig, completion_logps, generate


@dataclass
class OptimizerConfig:
    """AdamW settings (constant learning rate, as in the reference).

    Attributes:
        lr: learning rate.
        betas: AdamW betas; ``betas[1]`` also drives the influence preconditioner.
        eps: AdamW epsilon.
        weight_decay: decoupled weight decay.
        grad_clip: max global gradient norm; ``None`` disables clipping.
    """

    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0


@dataclass
class UpdateConfig:
    """How one RL update consumes a batch of rollouts.

    Attributes:
        loss: the clipped objective.
        ppo_epochs: passes over the batch. Whenever an update takes more than one optimizer
            step (several epochs or mini-batches), the log-probs of the policy before the first
            step are computed once and kept as the "old" policy of every step.
        mini_batch_size: rows per optimizer step; ``None`` takes the whole batch in one step.
        micro_batch_size: rows per forward/backward (gradient accumulation); bounds memory only:
            the accumulated gradient equals the whole mini-batch's.
        mask_truncated_completions: drop rows that hit ``max_new_tokens`` from the loss (they
            still count as sequences in the ``grpo``/``dr_grpo`` normalisers, as in TRL).
        completions_to_log: completions (prompt, text, advantage) returned in
            :attr:`UpdateStats.samples` per update, for inspection.
    """

    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    ppo_epochs: int = 1
    mini_batch_size: int | None = None
    micro_batch_size: int = 32
    mask_truncated_completions: bool = False
    completions_to_log: int = 4

    def __post_init__(self) -> None:
        if self.ppo_epochs < 1 or self.micro_batch_size < 1 or self.completions_to_log < 0:
            raise ValueError("ppo_epochs and micro_batch_size must be >= 1, completions_to_log >= 0")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or null, got {self.mini_batch_size}")


@dataclass
class RoleConfig:
    """Everything that defines one role (Generator or Solver)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    advantage: AdvantageEstimator = field(default_factory=MeanCentredAdvantage)


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
    """A causal LM policy with its own AdamW, updated by clipped policy gradient."""

    def __init__(self, config: RoleConfig) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.tokenizer = load_tokenizer(config.model)
        self.model = load_causal_lm(config.model)
        self._micro_batch_forward = self.training_step
        # The KL reference is the base model. With LoRA it is the same weights with the adapter
        # disabled; otherwise a frozen copy, made only when the KL term is on. It is kept out of
        # the module tree on purpose: no optimizer, no checkpoint, no strategy wrapping (a resumed
        # run rebuilds the identical base here before loading its checkpoint).
        reference = None
        if config.update.loss.beta != 0.0 and not _is_peft(self.model):
            reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        object.__setattr__(self, "_reference", reference)

    # -- wiring ---------------------------------------------------------------------------------
    def bind(self, wrapped: nn.Module) -> None:
        """Route micro-batch forwards through the strategy wrapper returned by ``fabric.setup``."""
        self._micro_batch_forward = wrapped.training_step

    def export(self, directory: Path) -> None:
        """Save the model (or its LoRA adapter) and tokenizer with ``save_pretrained``, for ``infuser eval``."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        return torch.optim.AdamW(self.trainable_parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                 weight_decay=opt.weight_decay)

    def optimizer_state(self) -> torch.optim.Optimizer:
        """The live optimizer (its state is what optimizer-aware influence preconditions with)."""
        optimizer = self.optimizers()
        return getattr(optimizer, "optimizer", optimizer)

    # -- sampling -------------------------------------------------------------------------------
    def rollout(self, prompts: list[str], num_samples: int, generator: torch.Generator | None = None,
                sampling: SamplingConfig | None = None) -> RolloutBatch:
        return generate(self.model, self.tokenizer, prompts, sampling or self.config.sampling, num_samples, generator)

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

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """On-policy (ratio 1) policy term over ``rollouts`` alone: the quantity influence differentiates.

        Only the policy-gradient term: no KL, entropy bonus or importance weight, which are
        regularisers of the update rather than the signal of the rollouts.
        """
        batch = rollouts.batch
        mask = self.loss_mask(batch)
        totals = BatchTotals(sequences=len(batch), tokens=int(mask.sum()),
                             max_completion_length=self._dr_grpo_length(batch))
        logps, _ = self._completion_logps(self.model, batch)
        config = dataclasses.replace(self.config.update.loss, beta=0.0, entropy_coef=0.0)
        return policy_loss(logps, logps.detach(), rollouts.advantages, mask, config, totals).loss

    # -- the update -----------------------------------------------------------------------------
    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        return self.config.advantage(rewards, groups)

    def update(self, batch: RolloutBatch, advantages: Tensor) -> UpdateStats:
        """One RL update (``ppo_epochs`` x mini-batches) on ``batch`` with per-row ``advantages``.

        Mini-batches split all rows, so the normalisers are TRL's; but only rows that can carry a
        gradient are forwarded: with no KL or entropy term, a zero advantage contributes exactly
        zero, so those rows cost nothing. Non-finite advantages count as zero (missing).
        """
        settings = self.config.update
        mask = self.loss_mask(batch)
        # row bookkeeping stays on the CPU; the tensors it indexes may live on the accelerator
        advantages = advantages.detach().float().cpu()
        advantages = torch.where(torch.isfinite(advantages), advantages, torch.zeros_like(advantages))
        regularised = settings.loss.beta != 0.0 or settings.loss.entropy_coef != 0.0
        active = (mask.sum(-1) > 0).cpu() & ((advantages != 0) | regularised)
        if not bool(active.any()):
            return UpdateStats(skipped="no rows with a non-zero advantage")
        rows = len(batch)
        mini = min(settings.mini_batch_size or rows, rows)
        steps = settings.ppo_epochs * math.ceil(rows / mini)
        fixed = self._fixed_logps(batch, active.nonzero().squeeze(-1), old=steps > 1)
        optimizer = self.optimizers()
        stats = UpdateStats(rows=int(active.sum()), samples=self._samples(batch, advantages))
        sums = _Sums()
        for _ in range(settings.ppo_epochs):
            order = torch.randperm(rows) if steps > 1 else torch.arange(rows)
            for start in range(0, rows, mini):
                mini_rows = order[start : start + mini]
                self._mini_batch_step(batch, advantages, mask, mini_rows, active, fixed, optimizer, stats, sums)
        stats.loss = sums.loss / max(stats.optimizer_steps, 1)
        stats.grad_norm = sums.grad_norm / stats.optimizer_steps if stats.optimizer_steps else float("nan")
        stats.clip_ratio_low = sums.low / max(sums.tokens, 1)
        stats.clip_ratio_high = sums.high / max(sums.tokens, 1)
        stats.clip_ratio_region = stats.clip_ratio_low + stats.clip_ratio_high
        stats.entropy = sums.entropy / max(sums.forwarded_tokens, 1)
        stats.kl = sums.kl / max(sums.forwarded_tokens, 1) if settings.loss.beta != 0.0 else float("nan")
        stats.tokens = int(mask.sum())
        stats.learning_rate = float(self.optimizer_state().param_groups[0]["lr"])
        return stats

    def _completion_logps(self, model: nn.Module, batch: RolloutBatch, with_entropy: bool = False,
                          entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
        """Completion log-probs at the sampling temperature; prompts shared unless checkpointing."""
        return completion_logps(model, batch, self.config.sampling.temperature, with_entropy, entropy_grad,
                                share_prompts=not self.config.model.gradient_checkpointing)

    def _dr_grpo_length(self, batch: RolloutBatch) -> int:
        configured = self.config.update.loss.max_completion_length
        return configured or max(self.config.sampling.max_new_tokens, batch.completion_ids.size(1))

    @torch.no_grad()
    def _fixed_logps(self, batch: RolloutBatch, rows: Tensor, old: bool) -> _FixedLogps:
        """Old and reference log-probs of ``rows``, in one no-grad pass per micro-batch."""
        beta = self.config.update.loss.beta != 0.0
        if not (old or beta):
            return _FixedLogps(old=None, ref=None)
        result = _FixedLogps(old=torch.zeros_like(batch.sampling_logps) if old else None,
                             ref=torch.zeros_like(batch.sampling_logps) if beta else None)
        for start in range(0, len(rows), self.config.update.micro_batch_size):
            chunk = rows[start : start + self.config.update.micro_batch_size]
            sub = batch.select(chunk)
            width = sub.completion_ids.size(1)
            if result.old is not None:
                result.old[chunk, :width] = self._completion_logps(self.model, sub)[0]
            if result.ref is not None:
                with self._reference_policy() as reference:
                    result.ref[chunk, :width] = self._completion_logps(reference, sub)[0]
        return result

    @contextmanager
    def _reference_policy(self) -> Iterator[nn.Module]:
        """The KL reference: the frozen copy, or the LoRA model with its adapter disabled (no copy)."""
        if self._reference is not None:
            yield self._reference.to(next(self.model.parameters()).device)
            return
        with self.model.disable_adapter():
            yield self.model

    def _samples(self, batch: RolloutBatch, advantages: Tensor) -> list[CompletionSample]:
        count = min(self.config.update.completions_to_log, len(batch))
        rows = torch.linspace(0, len(batch) - 1, count).round().long().unique().tolist() if count else []
        return [CompletionSample(
            prompt=self.tokenizer.decode(batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist()),
            completion=batch.texts[row], advantage=float(advantages[row]),
            tokens=int(batch.completion_mask[row].sum()), truncated=bool(batch.truncated[row]),
        ) for row in rows]

    def _totals(self, mask: Tensor, rows: int, length: int) -> BatchTotals:
        tokens = int(mask.sum())
        fabric = self._fabric
        per_process = None
        if fabric is not None and fabric.world_size > 1:
            per_process = float(fabric.all_reduce(torch.tensor(float(tokens), device=fabric.device), reduce_op="mean"))
        return BatchTotals(sequences=rows, tokens=tokens, max_completion_length=length, tokens_per_process=per_process)

    def _mini_batch_step(self, batch: RolloutBatch, advantages: Tensor, mask: Tensor, mini_rows: Tensor,
                         active: Tensor, fixed: _FixedLogps, optimizer, stats: UpdateStats, sums: _Sums) -> None:
        settings = self.config.update
        totals = self._totals(mask[mini_rows], len(mini_rows), self._dr_grpo_length(batch))
        sums.tokens += totals.tokens
        forward_rows = mini_rows[active[mini_rows]].sort().values  # a prompt's rows together: shared prefill
        if len(forward_rows) == 0:
            return
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(forward_rows), settings.micro_batch_size):
            chunk = forward_rows[start : start + settings.micro_batch_size]
            sub = batch.select(chunk)
            width = sub.completion_ids.size(1)
            old = fixed.old[chunk, :width] if fixed.old is not None else None
            ref = fixed.ref[chunk, :width] if fixed.ref is not None else None
            out = self._micro_batch_forward(ScoredRollouts(sub, advantages[chunk]), totals, old, ref)
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

    def _clip_gradients(self, optimizer) -> float:
        """The global gradient norm before clipping (clipping it when ``grad_clip`` is set)."""
        clip = self.config.optimizer.grad_clip
        if clip is not None:
            if self._fabric is not None:
                # a non-finite norm is reported (and the step skipped), not raised
                return float(self._fabric.clip_gradients(self, optimizer, max_norm=clip, error_if_nonfinite=False))
            return float(torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), clip))
        grads = [p.grad for p in self.trainable_parameters() if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


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


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
