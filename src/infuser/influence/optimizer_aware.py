"""INFUSER's optimizer-aware influence: the candidate's Adam step against the target gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from infuser.influence.base import InfluenceEstimator, PolicyGradientModel
from infuser.influence.gradients import AdamStep, FlatGradient, complete, policy_gradient, similarity, target_gradient
from infuser.rollout.rows import ScoredRollouts

Mode = Literal["dot", "cosine", "preconditioned_dot", "preconditioned_cosine"]
MODES: tuple[str, ...] = ("dot", "cosine", "preconditioned_dot", "preconditioned_cosine")
Preconditioner = Literal["paper", "adam_update"]
PRECONDITIONERS: tuple[str, ...] = ("paper", "adam_update")


class OptimizerAwareInfluence(InfluenceEstimator):
    """Score ``<Gamma_q, g_T>`` where ``Gamma_q`` is the step AdamW would take on candidate ``q``.

    With the Solver's live second moment ``v`` after ``s`` optimizer steps, the next step is
    ``t = s + 1`` and (the first moment is not used, as in the reference)::

        v'      = beta2 * v + (1 - beta2) * g_q**2
        Gamma_q = g_q / (sqrt(v' / (1 - beta2**t)) + eps)

    Folding the candidate's own ``g_q**2`` into ``v'`` keeps the preconditioner finite before the
    first step (``v = 0``), where Adam's first update is ``sign(g)``-like. All parameters the
    Solver trains take part; no projection.

    Args:
        mode: ``preconditioned_cosine`` (INFUSER's default, in ``[-1, 1]``),
            ``preconditioned_dot`` (the first-order target-loss decrease of the step, per unit
            learning rate), or the plain ``cosine`` / ``dot`` of raw gradients (TracIn-like
            ablations).
        fixed_v: precondition with ``v`` alone (no ``g_q**2`` term). The score is then linear in
            ``g_q``: ``<g_q / d, g_T> = <g_q, g_T / d>``, so the diagonal ``d`` is applied once,
            to the target gradient, in :meth:`prepare` (and ``1 / d**2`` for the cosine's norm).
        preconditioner: ``paper`` (``Gamma_q`` above) or ``adam_update``: the candidate's share
            of AdamW's whole update, first moment included, ``U(g_q) - U(0)`` with
            ``U(g) = m'_hat(g) / (sqrt(v'_hat(g)) + eps)``. Subtracting the update a zero gradient
            would take (momentum alone) leaves what the candidate changes, including how its
            ``g_q**2`` in ``v'`` shrinks the momentum part of the step (see docs/benchmarks.md
            for when that matters). Preconditioned modes only; not with ``fixed_v`` (where
            ``v'`` holds no candidate term it is ``fixed_v``'s score times a constant).
    """

    def __init__(self, mode: Mode = "preconditioned_cosine", fixed_v: bool = False,
                 preconditioner: Preconditioner = "paper") -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner: expected one of {', '.join(PRECONDITIONERS)}, got {preconditioner!r}")
        if preconditioner != "paper" and (fixed_v or not mode.startswith("preconditioned")):
            raise ValueError(f"preconditioner: {preconditioner!r} needs a preconditioned mode without fixed_v "
                             f"(got mode {mode!r}, fixed_v {fixed_v})")
        self.mode = mode
        self.fixed_v = fixed_v
        self.preconditioner = preconditioner
        self._flat: FlatGradient | None = None
        self._target: Tensor | None = None  # g_T, or g_T / d with fixed_v
        self._target_norm = 1.0
        self._adam: AdamStep | None = None
        self._inverse_square: Tensor | None = None  # 1 / d**2 with fixed_v (the norm of Gamma_q)
        self._null_update: Tensor | None = None  # U(0) with the adam_update preconditioner

    @property
    def preconditioned(self) -> bool:
        return self.mode.startswith("preconditioned")

    @property
    def cosine(self) -> bool:
        return self.mode.endswith("cosine")

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self._flat = FlatGradient(solver.trainable_parameters())
        gradient = target_gradient(self._flat, solver, target)
        (square,) = complete(solver, gradient.dot(gradient))
        self._target, self._target_norm = gradient, square**0.5
        momentum = self.preconditioner == "adam_update"
        self._adam = (AdamStep(solver.optimizer_state(), self._flat, "optimizer_aware", momentum=momentum)
                      if self.preconditioned else None)
        self._null_update = self._adam.direction(torch.zeros_like(gradient)).clone() if momentum else None
        if self._adam is not None and self.fixed_v:
            denominator = self._adam.fixed_denominator()
            self._target = gradient / denominator
            self._inverse_square = denominator.square_().reciprocal_()

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._flat is None or self._target is None:
            raise RuntimeError("OptimizerAwareInfluence.score() called before prepare()")
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        with self._flat.attached():
            for index, candidate in enumerate(candidates):
                gradient = policy_gradient(self._flat, solver, candidate)
                if self._adam is not None and self.fixed_v:
                    dot, square = complete(solver, gradient.dot(self._target),
                                           gradient.square().dot(self._inverse_square))
                else:
                    if self._null_update is not None:
                        step = self._adam.direction(gradient).sub_(self._null_update)
                    else:
                        step = self._adam.preconditioned(gradient) if self._adam is not None else gradient
                    dot, square = complete(solver, step.dot(self._target), step.dot(step))
                scores[index] = similarity(dot, square, self._target_norm, self.cosine)
        return scores
