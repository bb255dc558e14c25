"""The clipped policy-gradient objective shared by the Generator and the Solver.

:func:`per_token_policy_loss` computes the per-token PPO-style loss (clipped ratio, truncated
importance weight, KL penalty); :func:`aggregate` turns it into one number. Aggregation takes the
mini-batch totals explicitly (sequences, tokens) so that summing the losses of several
micro-batches gives exactly the loss of the whole mini-batch: gradient accumulation changes
memory, never the objective. The per-token quantities match TRL's ``GRPOTrainer`` term for term
(``tests/test_trl_parity.py`` checks it); where the two differ by design the docstrings say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from infuser.config import LossType, PolicyLossConfig
from infuser.rollout.rows import BatchTotals


@dataclass
class PerTokenLoss:
    """The per-token loss (B x T, before masking) and the quantities behind the metrics."""

    loss: Tensor
    ratio: Tensor
    low_clipped: Tensor  # bool: ratio < 1 - eps_low with negative advantage (gradient cut)
    high_clipped: Tensor  # bool: ratio > 1 + eps_high with positive advantage (gradient cut)
    kl: Tensor | None  # k3 estimate per token (before the ratio correction); None without KL


@dataclass
class PolicyLossOutput:
    """One micro-batch's share of the mini-batch loss, and its per-token parts."""

    loss: Tensor
    per_token: PerTokenLoss


def per_token_policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    config: PolicyLossConfig,
    sampling_logps: Tensor | None = None,
    ref_logps: Tensor | None = None,
) -> PerTokenLoss:
    """Per-token clipped surrogate loss (B x T), before masking and aggregation.

    ``advantages`` is one value per sequence (B). ``old_logps`` are the log-probs the update
    treats as the behaviour policy; ``sampling_logps`` (if given) are those of the rollout engine
    and only enter the truncated importance weight, which scales the policy term but not the KL
    term (as TRL does).
    """
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)
    adv = advantages.unsqueeze(-1).to(ratio.device, ratio.dtype)
    clipped_ratio = torch.clamp(ratio, 1 - config.eps_low, 1 + config.eps_high)
    loss = -torch.minimum(ratio * adv, clipped_ratio * adv)
    if config.importance_cap is not None and sampling_logps is not None:
        loss = loss * torch.exp(old_logps - sampling_logps).clamp(max=config.importance_cap).detach()
    kl = None
    if config.beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs the reference policy's log-probs")
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        loss = loss + config.beta * (kl * ratio if config.kl_ratio_correction else kl)
    low = (ratio < 1 - config.eps_low) & (adv < 0)
    high = (ratio > 1 + config.eps_high) & (adv > 0)
    return PerTokenLoss(loss=loss, ratio=ratio, low_clipped=low, high_clipped=high, kl=kl)


def aggregate(per_token_loss: Tensor, mask: Tensor, loss_type: LossType, totals: BatchTotals) -> Tensor:
    """This micro-batch's share of the mini-batch loss (the shares sum to the mini-batch loss)."""
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    sequences = totals.sequences if totals.sequences_per_process is None else totals.sequences_per_process
    if loss_type == "grpo":
        per_sequence = masked.sum(-1) / mask.sum(-1).clamp_min(1)
        return per_sequence.sum() / max(sequences, 1)
    if loss_type == "dr_grpo":
        return masked.sum() / max(sequences * totals.max_completion_length, 1)
    if loss_type == "dapo" and totals.tokens_per_process is not None:
        return masked.sum() / max(totals.tokens_per_process, 1.0)
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
    """Clipped policy-gradient loss of one micro-batch, normalised by the mini-batch ``totals``.

    The entropy bonus (when ``config.entropy_coef`` is set and ``entropy`` given) is the
    mini-batch token-mean entropy, independent of ``loss_type``.
    """
    per_token = per_token_policy_loss(logps, old_logps, advantages, config, sampling_logps, ref_logps)
    loss = aggregate(per_token.loss, mask, config.loss_type, totals)
    if config.entropy_coef != 0.0 and entropy is not None:
        tokens = totals.tokens if totals.tokens_per_process is None else totals.tokens_per_process
        loss = loss - config.entropy_coef * (entropy * mask.to(entropy.dtype)).sum() / max(tokens, 1)
    return PolicyLossOutput(loss=loss, per_token=per_token)


def carrying_gradient(mask: Tensor, advantages: Tensor, regularised: bool = False) -> Tensor:
    """Rows that can add to a policy-gradient loss's gradient: some token in the loss ``mask``, and a
    non-zero advantage unless a KL or entropy term (``regularised``) makes every such row count."""
    return (mask.sum(-1) > 0).cpu() & ((advantages != 0) | regularised)
