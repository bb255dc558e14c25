"""An influence estimator shipped by a separate package, registered through its entry point."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from infuser.influence.base import InfluenceEstimator, PolicyGradientModel
from infuser.rollout.rows import ScoredRollouts


class RandomInfluence(InfluenceEstimator):
    """Seeded uniform scores in [-1, 1], ignoring the Solver: the floor of fidelity.

    Args:
        seed: the same seed gives the same scores every iteration.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._generator is None:
            raise RuntimeError("RandomInfluence.score() called before prepare()")
        return torch.rand(len(candidates), generator=self._generator, dtype=torch.float64) * 2 - 1
