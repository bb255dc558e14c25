"""Several reward functions, weighted, with rewards that may be missing; and the reward metrics.

A reward function scores every sample, or returns NaN where it does not apply (a format check on
a question that has no format, a judge that timed out). :func:`combine_rewards` sums the weighted
columns skipping the missing values, and marks a sample NaN only when *every* column is missing:
the advantage estimators then treat it as missing (advantage 0, out of its group's statistics)
instead of as a genuine reward of 0, which would bias the group baseline. This is TRL's
``sum_then_normalize`` with ``None`` rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from infuser.advantages import group_stats


@dataclass(frozen=True)
class RewardColumn:
    """One reward function's value for every sample; NaN where it does not apply."""

    name: str
    values: Tensor
    weight: float = 1.0


@dataclass(frozen=True)
class CombinedRewards:
    """The weighted total per sample (NaN: every column missing) and the columns behind it."""

    total: Tensor
    columns: tuple[RewardColumn, ...]

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/rewards/{name}/mean`` and ``/std`` per column, over the samples it scored."""
        out = {}
        for column in self.columns:
            values = column.values[torch.isfinite(column.values)].to(torch.float64)
            out[f"{prefix}/rewards/{column.name}/mean"] = float(values.mean()) if values.numel() else float("nan")
            out[f"{prefix}/rewards/{column.name}/std"] = float(values.std()) if values.numel() > 1 else float("nan")
        return out


def combine_rewards(columns: Sequence[RewardColumn]) -> CombinedRewards:
    """Weighted sum of the columns, missing values skipped; NaN where all are missing."""
    if not columns:
        raise ValueError("combine_rewards needs at least one reward column")
    names = [column.name for column in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"reward column names must be unique, got {names}")
    length = columns[0].values.numel()
    if any(column.values.dim() != 1 or column.values.numel() != length for column in columns):
        raise ValueError("every reward column must be a 1-D tensor with one value per sample")
    stacked = torch.stack([column.values.to(torch.float64) for column in columns], dim=1)
    weights = torch.tensor([column.weight for column in columns], dtype=torch.float64)
    present = torch.isfinite(stacked)
    total = torch.where(present, stacked * weights, torch.zeros_like(stacked)).sum(-1)
    total = torch.where(present.any(-1), total, torch.full_like(total, float("nan")))
    return CombinedRewards(total=total, columns=tuple(columns))


@dataclass(frozen=True)
class RewardStats:
    """Reward metrics under TRL's names.

    Attributes:
        reward: mean of the finite rewards.
        reward_std: their (unbiased) standard deviation.
        frac_reward_zero_std: fraction of samples whose group has zero reward spread (no
            learning signal under any group-relative advantage).
    """

    reward: float
    reward_std: float
    frac_reward_zero_std: float

    @classmethod
    def of(cls, rewards: Tensor, groups: Tensor) -> RewardStats:
        finite = rewards[torch.isfinite(rewards)].to(torch.float64)
        if rewards.numel() == 0:
            return cls(reward=float("nan"), reward_std=float("nan"), frac_reward_zero_std=float("nan"))
        spread = group_stats(rewards, groups).std
        return cls(
            reward=float(finite.mean()) if finite.numel() else float("nan"),
            reward_std=float(finite.std()) if finite.numel() > 1 else 0.0,
            frac_reward_zero_std=float((spread == 0).double().mean()),
        )

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/reward": self.reward, f"{prefix}/reward_std": self.reward_std,
                f"{prefix}/frac_reward_zero_std": self.frac_reward_zero_std}
