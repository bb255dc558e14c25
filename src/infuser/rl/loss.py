"""The clipped policy-gradient objective shared by the Generator and the Solver.

One function computes the per-token PPO-style loss; a second aggregates it. Aggregation takes the
mini-batch totals explicitly (sequences, tokens) so that summing the losses of several
micro-batches gives exactly the loss of the whole mini-batch: gradient accumulation changes memory,
never the objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo"]


@dataclass
class PolicyLossConfig:
    """Settings of the clipped objective.

    Attributes:
        loss_type: how per-token losses become one number. ``grpo``: mean over each sequence's
            tokens, then over sequences. ``dr_grpo``: sum over all tokens divided by a constant
            (sequences x ``max_completion_length``). ``dapo``: token-mean over the mini-batch
            (the INFUSER reference). ``bnpo``: token-mean over the local batch (same as ``dapo``
            on one process).
        eps_low: lower clip range of the importance ratio (``1 - eps_low``).
        eps_high: upper clip range (``1 + eps_high``); larger than ``eps_low`` is "clip-higher".
        beta: weight of the k3 KL penalty to the reference policy; 0 disables it and skips the
            reference forward pass.
        entropy_coef: weight of an entropy bonus (subtracted from the loss); 0 disables it.
        importance_cap: cap of the truncated importance weight ``min(pi_old / pi_sampler, cap)``
            correcting for sampler/trainer probability mismatch; ``None`` disables it.
        max_completion_length: the constant of ``dr_grpo``; defaults to the longest completion.
    """

    loss_type: LossType = "dapo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    entropy_coef: float = 0.0
    importance_cap: float | None = 2.0
    max_completion_length: int | None = None

    def __post_init__(self) -> None:
        if self.loss_type not in ("grpo", "dr_grpo", "dapo", "bnpo"):
            raise ValueError(f"loss_type: expected one of grpo, dr_grpo, dapo, bnpo, got {self.loss_type!r}")
        if not (0 <= self.eps_low < 1) or self.eps_high < 0:
            raise ValueError(f"eps_low must be in [0, 1) and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.importance_cap is not None and self.importance_cap <= 0:
            raise ValueError(f"importance_cap must be positive or null, got {self.importance_cap}")


@dataclass(frozen=True)
class BatchTotals:
    """Sizes of the whole mini-batch that micro-batch losses are normalised by."""

    sequences: int
    tokens: int
    max_completion_length: int


@dataclass
class PolicyLossOutput:
    """The aggregated loss and the per-token quantities behind the logged metrics."""

    loss: Tensor
    per_token_loss: Tensor
    ratio: Tensor
    low_clipped: Tensor  # bool: ratio < 1 - eps_low with negative advantage (gradient cut)
    high_clipped: Tensor  # bool: ratio > 1 + eps_high with positive advantage (gradient cut)
    kl: Tensor | None


def per_token_policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    config: PolicyLossConfig,
    sampling_logps: Tensor | None = None,
    ref_logps: Tensor | None = None,
    entropy: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Per-token clipped surrogate loss (B x T), before masking and aggregation.

    ``advantages`` is one value per sequence (B). ``old_logps`` are the log-probs the update
    treats as the behaviour policy; ``sampling_logps`` (if given) are those of the rollout
    engine, used only for the truncated importance weight.
    """
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - config.eps_low, 1 + config.eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    if config.importance_cap is not None and sampling_logps is not None:
        weight = torch.exp(old_logps - sampling_logps).clamp(max=config.importance_cap).detach()
        loss = loss * weight
    kl = None
    if config.beta != 0.0 and ref_logps is not None:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        loss = loss + config.beta * kl
    if config.entropy_coef != 0.0 and entropy is not None:
        loss = loss - config.entropy_coef * entropy
    low = (ratio < 1 - config.eps_low) & (adv < 0)
    high = (ratio > 1 + config.eps_high) & (adv > 0)
    return loss, ratio, low, high, kl


def aggregate(per_token_loss: Tensor, mask: Tensor, loss_type: LossType, totals: BatchTotals) -> Tensor:
    """This micro-batch's share of the mini-batch loss (shares sum to the mini-batch loss)."""
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    if loss_type == "grpo":
        per_sequence = masked.sum(-1) / mask.sum(-1).clamp_min(1)
        return per_sequence.sum() / max(totals.sequences, 1)
    if loss_type == "dr_grpo":
        return masked.sum() / max(totals.sequences * totals.max_completion_length, 1)
    return masked.sum() / max(totals.tokens, 1)


def policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: PolicyLossConfig,
    totals: BatchTotals,
    sampling_logps: Tensor | None = None,
    ref_logps: Tensor | None = None,
    entropy: Tensor | None = None,
) -> PolicyLossOutput:
    """Clipped policy-gradient loss of one micro-batch, normalised by the mini-batch ``totals``."""
    per_token, ratio, low, high, kl = per_token_policy_loss(
        logps, old_logps, advantages, config, sampling_logps, ref_logps, entropy
    )
    loss = aggregate(per_token, mask, config.loss_type, totals)
    return PolicyLossOutput(loss=loss, per_token_loss=per_token, ratio=ratio, low_clipped=low, high_clipped=high, kl=kl)
