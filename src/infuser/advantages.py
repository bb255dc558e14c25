"""Advantage estimators: turn grouped scalar rewards into per-sample advantages.

Every estimator takes a flat reward vector and a group id per sample (the questions of one
document for the Generator, the answers to one question for the Solver) and returns one
advantage per sample. NaN or infinite rewards are treated as missing: they get advantage 0 and do
not contribute to their group's statistics, so one bad reward can never poison a whole batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


@dataclass(frozen=True)
class GroupStats:
    """Per-sample view of the statistics of the group each sample belongs to."""

    mean: Tensor
    std: Tensor  # unbiased; 0 for groups with fewer than two finite rewards
    count: Tensor  # finite rewards in the group


def group_stats(rewards: Tensor, groups: Tensor) -> GroupStats:
    """Mean, unbiased std and finite count of each sample's group, ignoring non-finite rewards."""
    rewards = rewards.to(torch.float64)
    finite = torch.isfinite(rewards)
    clean = torch.where(finite, rewards, torch.zeros_like(rewards))
    _, index = torch.unique(groups, return_inverse=True)
    num_groups = int(index.max().item()) + 1 if index.numel() else 0
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, finite.to(torch.float64))
    total = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, clean)
    mean = total / count.clamp_min(1)
    centred = torch.where(finite, clean - mean[index], torch.zeros_like(clean))
    sq = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, centred**2)
    std = torch.where(count > 1, (sq / (count - 1).clamp_min(1)).sqrt(), torch.zeros_like(sq))
    return GroupStats(mean=mean[index], std=std[index], count=count[index])


class AdvantageEstimator(ABC):
    """Maps (rewards, group ids) to advantages of the same shape.

    Subclass and register under the ``infuser.advantage`` entry-point group to add your own.
    """

    @abstractmethod
    def __call__(self, rewards: Tensor, groups: Tensor) -> Tensor: ...


def _finish(advantages: Tensor, rewards: Tensor) -> Tensor:
    """Zero the advantages of missing rewards and return float32."""
    return torch.where(torch.isfinite(rewards), advantages, torch.zeros_like(advantages)).to(torch.float32)


class MeanCentredAdvantage(AdvantageEstimator):
    """Dr.GRPO: ``A = r - mean_group(r)``. No std division, so no length/difficulty bias."""

    def __call__(self, rewards: Tensor, groups: Tensor) -> Tensor:
        stats = group_stats(rewards, groups)
        return _finish(rewards.to(torch.float64) - stats.mean, rewards)


class GroupStdAdvantage(AdvantageEstimator):
    """GRPO: ``A = (r - mean_group) / (std_group + eps)``.

    Kept for comparison: with near-constant continuous rewards the std is tiny and advantages
    explode, which is exactly what DuGRPO fixes.
    """

    def __init__(self, eps: float = 1e-4) -> None:
        self.eps = eps

    def __call__(self, rewards: Tensor, groups: Tensor) -> Tensor:
        stats = group_stats(rewards, groups)
        return _finish((rewards.to(torch.float64) - stats.mean) / (stats.std + self.eps), rewards)


class BatchStdAdvantage(AdvantageEstimator):
    """Centre per group, then divide by the std of all centred rewards of the batch."""

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def __call__(self, rewards: Tensor, groups: Tensor) -> Tensor:
        stats = group_stats(rewards, groups)
        finite = torch.isfinite(rewards)
        centred = torch.where(finite, rewards.to(torch.float64) - stats.mean, torch.zeros_like(stats.mean))
        valid = centred[finite]
        scale = valid.std() if valid.numel() > 1 else torch.zeros((), dtype=torch.float64)
        return _finish(centred / (scale + self.eps), rewards)


class DuGRPOAdvantage(AdvantageEstimator):
    """DuGRPO: ``A = (r - mean_d) / (std_d + sigma_bar + eps)``.

    ``sigma_bar`` is the mean of the non-zero group stds over the batch. Adding it to every
    denominator keeps near-constant groups from exploding (GRPO's failure on noisy continuous
    rewards) while still normalising groups of very different spread.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def __call__(self, rewards: Tensor, groups: Tensor) -> Tensor:
        stats = group_stats(rewards, groups)
        _, first = _first_index_per_group(groups)
        group_std = stats.std[first]
        nonzero = group_std[group_std > 0]
        sigma_bar = nonzero.mean() if nonzero.numel() else torch.zeros((), dtype=torch.float64)
        centred = rewards.to(torch.float64) - stats.mean
        return _finish(centred / (stats.std + sigma_bar + self.eps), rewards)


def _first_index_per_group(groups: Tensor) -> tuple[Tensor, Tensor]:
    """Unique group ids and the index of one sample in each."""
    unique, inverse = torch.unique(groups, return_inverse=True)
    first = torch.full((unique.numel(),), groups.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(groups.numel()), reduce="amin")
    return unique, first
