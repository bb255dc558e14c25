"""The influence-estimator interface.

An estimator answers one question per candidate: *if the Solver took an optimizer step on this
candidate's rollouts, how much would that help on the target set?* The loop calls
:meth:`InfluenceEstimator.prepare` once per iteration with the target-side rollouts (so target
work, e.g. the target gradient, is done once) and then :meth:`InfluenceEstimator.score` on
batches of candidates.

Orientation, fixed for every estimator: scores are plain floats and **higher means more useful**
(a step on the candidate is predicted to lower the target loss). Both sides are gradients of the
same loss, so a positive inner product means the candidate's descent direction also descends the
target loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from infuser.rollout.engine import RolloutBatch


@dataclass
class ScoredRollouts:
    """Rollouts with one advantage per row: the input of a policy-gradient loss."""

    batch: RolloutBatch
    advantages: Tensor


class PolicyGradientModel(Protocol):
    """What an estimator needs from the Solver."""

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def optimizer_state(self) -> torch.optim.Optimizer: ...

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """The policy-gradient loss the Solver trains on, evaluated on-policy (ratio 1)."""
        ...


class InfluenceEstimator(ABC):
    """Scores candidate questions by their predicted usefulness for the target set."""

    @abstractmethod
    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        """Compute and keep the target-side quantities of this iteration."""

    @abstractmethod
    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        """One float64 score per candidate, higher = more useful."""


class FlatGradient:
    """Collects the gradient of a list of parameters into one flat vector.

    Each parameter's ``.grad`` is made a view into a single buffer before ``backward()``;
    autograd accumulates in place, so after the backward pass the buffer *is* the flattened
    gradient: no per-parameter concatenation per candidate.
    """

    def __init__(self, parameters: list[nn.Parameter]) -> None:
        self.parameters = parameters
        self.numel = sum(p.numel() for p in parameters)
        first = parameters[0]
        self.buffer = torch.zeros(self.numel, dtype=torch.float32, device=first.device)
        self._views = []
        offset = 0
        for p in parameters:
            self._views.append(self.buffer[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def of(self, loss_fn) -> Tensor:
        """The flat gradient of ``loss_fn()`` (a fresh tensor, safe to keep)."""
        self.buffer.zero_()
        for p, view in zip(self.parameters, self._views):
            p.grad = view if p.dtype == view.dtype else None
        loss_fn().backward()
        for p, view in zip(self.parameters, self._views):
            if p.grad is not None and p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad)
            p.grad = None
        return self.buffer.clone()

    def flatten_state(self, optimizer: torch.optim.Optimizer, key: str) -> Tensor:
        """One optimizer-state tensor per parameter (e.g. AdamW's ``exp_avg_sq``), flattened."""
        parts = []
        for p in self.parameters:
            state = optimizer.state.get(p, {})
            parts.append(state[key].reshape(-1).float() if key in state else torch.zeros(p.numel(), device=p.device))
        return torch.cat(parts)
