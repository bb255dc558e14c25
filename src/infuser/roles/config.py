"""The configuration of one role (Generator or Solver): its model, optimizer, sampling, update and
advantage estimator, as the ``generator:`` and ``solver:`` sections of a run's YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from infuser.models import ModelConfig
from infuser.rl.advantages import AdvantageEstimator, MeanCentredAdvantage
from infuser.rl.update import UpdateConfig
from infuser.rollout.engine import SamplingConfig


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
class RoleConfig:
    """Everything that defines one role (Generator or Solver)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    advantage: AdvantageEstimator = field(default_factory=MeanCentredAdvantage)
