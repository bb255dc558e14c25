"""INFUSER's optimizer-aware influence: the candidate's Adam step against the target gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from infuser.influence.base import FlatGradient, InfluenceEstimator, PolicyGradientModel, ScoredRollouts

Mode = Literal["dot", "cosine", "preconditioned_dot", "preconditioned_cosine"]


class OptimizerAwareInfluence(InfluenceEstimator):
    """Score ``<Gamma_q, g_T>`` where ``Gamma_q`` is the step AdamW would take on candidate ``q``.

    With the Solver's live second moment ``v`` after ``s`` optimizer steps, the next step is
    ``t = s + 1`` and (the first moment is not used, as in the reference)::

        v'      = beta2 * v + (1 - beta2) * g_q**2
        Gamma_q = g_q / (sqrt(v' / (1 - beta2**t)) + eps)

    Folding the candidate's own ``g_q**2`` into ``v'`` keeps the preconditioner finite before the
    first step (``v = 0``), where Adam's first update is ``sign(g)``-like.

    Args:
        mode: ``preconditioned_cosine`` (INFUSER's default), ``preconditioned_dot``, or the
            plain ``cosine`` / ``dot`` of raw gradients (TracIn-like ablations).
        fixed_v: precondition with ``v`` alone (no ``g_q**2`` term). The score is then linear in
            ``g_q``, so the diagonal preconditioner is applied once to the target gradient
            instead of once per candidate.
    """

    def __init__(self, mode: Mode = "preconditioned_cosine", fixed_v: bool = False) -> None:
        if mode not in ("dot", "cosine", "preconditioned_dot", "preconditioned_cosine"):
            raise ValueError(f"mode: expected dot, cosine, preconditioned_dot or preconditioned_cosine, got {mode!r}")
        self.mode = mode
        self.fixed_v = fixed_v
        self._flat: FlatGradient | None = None
        self._target: Tensor | None = None
        self._target_preconditioned: Tensor | None = None
        self._v: Tensor | None = None
        self._beta2 = 0.999
        self._eps = 1e-8
        self._correction = 1.0

    @property
    def preconditioned(self) -> bool:
        return self.mode.startswith("preconditioned")

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self._flat = FlatGradient(solver.trainable_parameters())
        self._target = self._flat.of(lambda: solver.surrogate_loss(target)).double()
        if not self.preconditioned:
            return
        optimizer = solver.optimizer_state()
        group = optimizer.param_groups[0]
        self._beta2 = float(group["betas"][1])
        self._eps = float(group["eps"])
        steps = [float(s["step"]) for s in optimizer.state.values() if "step" in s]
        next_step = (max(steps) if steps else 0.0) + 1.0
        self._correction = 1.0 - self._beta2**next_step
        self._v = self._flat.flatten_state(optimizer, "exp_avg_sq").double()
        if self.fixed_v:
            denominator = (self._v / self._correction).sqrt() + self._eps
            self._target_preconditioned = self._target / denominator
            self._denominator = denominator

    def precondition(self, gradient: Tensor) -> Tensor:
        """``Gamma`` for one flat candidate gradient."""
        assert self._v is not None
        if self.fixed_v:
            return gradient / self._denominator
        v_next = self._beta2 * self._v + (1.0 - self._beta2) * gradient.square()
        return gradient / ((v_next / self._correction).sqrt() + self._eps)

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._flat is None or self._target is None:
            raise RuntimeError("OptimizerAwareInfluence.score() called before prepare()")
        target_norm = self._target.norm()
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        for index, candidate in enumerate(candidates):
            gradient = self._flat.of(lambda: solver.surrogate_loss(candidate)).double()
            if self.fixed_v and self.preconditioned:
                # Linear in g_q: <g/d, g_T> == <g, g_T/d>; the norm still needs Gamma itself.
                dot = gradient.dot(self._target_preconditioned)
                step = gradient / self._denominator if self.mode == "preconditioned_cosine" else None
            else:
                step = self.precondition(gradient) if self.preconditioned else gradient
                dot = step.dot(self._target)
            if self.mode in ("cosine", "preconditioned_cosine"):
                dot = dot / (step.norm() * target_norm).clamp_min(1e-30)
            scores[index] = dot
        return scores
