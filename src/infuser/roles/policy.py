"""What the Generator and the Solver have in common: a causal LM trained by clipped policy gradient.

:class:`PolicyRole` is a LightningModule with manual optimisation. It samples rollouts and
performs one RL update from rollouts and rewards that the loop hands it. The forward pass of a
micro-batch is :meth:`training_step`, which the loop marks as a forward method of the Fabric
wrapper so that distributed strategies see (and synchronise) every forward/backward pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor, nn

from infuser.influence.base import ScoredRollouts
from infuser.models import ModelConfig, load_causal_lm, load_tokenizer
from infuser.rl.advantages import AdvantageEstimator, MeanCentredAdvantage
from infuser.rl.loss import BatchTotals, PolicyLossConfig, policy_loss
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
        ppo_epochs: passes over the batch (old log-probs are kept from before the first).
        mini_batch_size: rows per optimizer step; ``None`` takes the whole batch in one step.
        micro_batch_size: rows per forward/backward (gradient accumulation); bounds memory only.
        mask_truncated_completions: drop rows that hit ``max_new_tokens`` from the loss.
    """

    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    ppo_epochs: int = 1
    mini_batch_size: int | None = None
    micro_batch_size: int = 32
    mask_truncated_completions: bool = False


@dataclass
class RoleConfig:
    """Everything that defines one role (Generator or Solver)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    advantage: AdvantageEstimator = field(default_factory=MeanCentredAdvantage)


@dataclass
class UpdateStats:
    """Metrics of one update, named as TRL users know them."""

    skipped: str = ""  # reason when no step was taken
    loss: float = float("nan")
    grad_norm: float = float("nan")
    learning_rate: float = float("nan")
    clip_ratio_low: float = 0.0
    clip_ratio_high: float = 0.0
    clip_ratio_region: float = 0.0
    kl: float = float("nan")
    entropy: float = float("nan")
    rows: int = 0
    tokens: int = 0
    optimizer_steps: int = 0

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/loss": self.loss, f"{prefix}/grad_norm": self.grad_norm,
            f"{prefix}/learning_rate": self.learning_rate, f"{prefix}/clip_ratio/low_mean": self.clip_ratio_low,
            f"{prefix}/clip_ratio/high_mean": self.clip_ratio_high,
            f"{prefix}/clip_ratio/region_mean": self.clip_ratio_region, f"{prefix}/kl": self.kl,
            f"{prefix}/entropy": self.entropy, f"{prefix}/update_rows": float(self.rows),
            f"{prefix}/update_skipped": float(bool(self.skipped)),
        }


class PolicyRole(L.LightningModule):
    """A causal LM policy with its own AdamW, updated by clipped policy gradient."""

    def __init__(self, config: RoleConfig) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.tokenizer = load_tokenizer(config.model)
        self.model = load_causal_lm(config.model)
        self._micro_batch_forward = self.training_step

    # -- wiring ---------------------------------------------------------------------------------
    def bind(self, wrapped: nn.Module) -> None:
        """Route micro-batch forwards through the strategy wrapper returned by ``fabric.setup``."""
        self._micro_batch_forward = wrapped.training_step

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
    def training_step(self, rollouts: ScoredRollouts, totals: BatchTotals, old_logps: Tensor | None = None):
        """Loss of one micro-batch under the current policy (the forward of one accumulation step)."""
        loss_config = self.config.update.loss
        logps, entropy = completion_logps(self.model, rollouts.batch, self.config.sampling.temperature,
                                          with_entropy=loss_config.entropy_coef != 0.0)
        mask = rollouts.batch.completion_mask
        if self.config.update.mask_truncated_completions:
            mask = mask * (~rollouts.batch.truncated).unsqueeze(-1).to(mask.dtype)
        old = logps.detach() if old_logps is None else old_logps
        return policy_loss(logps, old, rollouts.advantages, mask, loss_config, totals,
                           sampling_logps=rollouts.batch.sampling_logps, entropy=entropy), mask, entropy

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """On-policy (ratio 1) loss over ``rollouts`` alone: the quantity influence differentiates."""
        batch = rollouts.batch
        totals = BatchTotals(sequences=len(batch), tokens=int(batch.completion_mask.sum()),
                             max_completion_length=batch.completion_ids.size(1))
        logps, _ = completion_logps(self.model, batch, self.config.sampling.temperature)
        config = self.config.update.loss
        return policy_loss(logps, logps.detach(), rollouts.advantages, batch.completion_mask, config, totals).loss

    # -- the update -----------------------------------------------------------------------------
    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        return self.config.advantage(rewards, groups)

    def update(self, batch: RolloutBatch, advantages: Tensor) -> UpdateStats:
        """One RL update (``ppo_epochs`` x mini-batches) on ``batch`` with per-row ``advantages``."""
        usable = torch.isfinite(advantages) & (advantages != 0)
        if self.config.update.mask_truncated_completions:
            usable &= ~batch.truncated
        if not bool(usable.any()):
            return UpdateStats(skipped="no rows with a non-zero advantage")
        rows = usable.nonzero().squeeze(-1)
        settings = self.config.update
        optimizer = self.optimizers()
        mini = settings.mini_batch_size or len(rows)
        old_logps = self._old_logps(batch, rows) if settings.ppo_epochs > 1 else None
        stats = UpdateStats(rows=len(rows))
        sums = {"loss": 0.0, "low": 0.0, "high": 0.0, "tokens": 0, "entropy": 0.0, "kl": 0.0}
        for _ in range(settings.ppo_epochs):
            order = rows[torch.randperm(len(rows))] if settings.ppo_epochs > 1 else rows
            for start in range(0, len(order), mini):
                mini_rows = order[start : start + mini]
                self._mini_batch_step(batch, advantages, mini_rows, old_logps, rows, optimizer, stats, sums)
        tokens = max(sums["tokens"], 1)
        stats.loss = sums["loss"] / max(stats.optimizer_steps, 1)
        stats.clip_ratio_low, stats.clip_ratio_high = sums["low"] / tokens, sums["high"] / tokens
        stats.clip_ratio_region = stats.clip_ratio_low + stats.clip_ratio_high
        stats.entropy = sums["entropy"] / tokens if self.config.update.loss.entropy_coef else float("nan")
        stats.tokens = sums["tokens"]
        stats.learning_rate = float(self.optimizer_state().param_groups[0]["lr"])
        return stats

    def _old_logps(self, batch: RolloutBatch, rows: Tensor) -> Tensor:
        """Log-probs before the first epoch, kept fixed across epochs (indexed by batch row)."""
        old = torch.zeros_like(batch.sampling_logps)
        with torch.no_grad():
            for start in range(0, len(rows), self.config.update.micro_batch_size):
                chunk = rows[start : start + self.config.update.micro_batch_size]
                sub = batch.select(chunk)
                logps, _ = completion_logps(self.model, sub, self.config.sampling.temperature)
                old[chunk, : logps.size(1)] = logps
        return old

    def _mini_batch_step(self, batch, advantages, mini_rows, old_logps, all_rows, optimizer, stats, sums) -> None:
        settings = self.config.update
        mask = batch.completion_mask[mini_rows]
        totals = BatchTotals(sequences=len(mini_rows), tokens=int(mask.sum()),
                             max_completion_length=settings.loss.max_completion_length or batch.completion_ids.size(1))
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(mini_rows), settings.micro_batch_size):
            chunk = mini_rows[start : start + settings.micro_batch_size]
            sub = batch.select(chunk)
            old = old_logps[chunk, : sub.completion_ids.size(1)] if old_logps is not None else None
            out, used_mask, entropy = self._micro_batch_forward(
                ScoredRollouts(sub, advantages[chunk]), totals, old)
            self.manual_backward(out.loss)
            step_loss += float(out.loss.detach())
            used = used_mask.bool()
            sums["low"] += int((out.low_clipped & used).sum())
            sums["high"] += int((out.high_clipped & used).sum())
            sums["tokens"] += int(used.sum())
            if entropy is not None:
                sums["entropy"] += float((entropy.detach() * used).sum())
        clip = self.config.optimizer.grad_clip
        grads = [p.grad for p in self.trainable_parameters() if p.grad is not None]
        if clip is not None:
            norm = self._fabric.clip_gradients(self, optimizer, max_norm=clip) if self._fabric else \
                torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not math.isfinite(float(norm)):
            optimizer.zero_grad(set_to_none=True)
            stats.skipped = "non-finite gradient norm; step skipped"
            return
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stats.grad_norm = float(norm)
        stats.optimizer_steps += 1
        sums["loss"] += step_loss
