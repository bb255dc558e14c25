"""INFUSER's optimizer-aware influence: the candidate's Adam step against the target gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from infuser.influence.base import InfluenceEstimator, PolicyGradientModel
from infuser.influence.gradients import (
    AdamStep,
    FlatGradient,
    PartialSums,
    complete,
    policy_gradient,
    similarity,
    target_gradient,
)
from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from infuser.rollout.rows import ScoredRollouts
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch

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

    Memory between :meth:`prepare` and :meth:`release`, in float32 vectors of the Solver's
    trainable size (of this process's shard under FSDP, which adds one flat gradient buffer): the
    target gradient, and with preconditioning AdamW's second moment (with ``fixed_v`` instead
    ``g_T / d`` and ``1 / d**2``); plain ``dot`` and ``cosine`` keep ``g_T`` alone. A candidate's
    gradient is reduced during its backward and never kept (:mod:`infuser.influence.gradients`).

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
            ``v'`` holds no candidate term it is ``fixed_v``'s score times a constant). Keeps
            AdamW's first moment too (one more model-sized vector).
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
        self.release()

    @property
    def preconditioned(self) -> bool:
        return self.mode.startswith("preconditioned")

    @property
    def cosine(self) -> bool:
        return self.mode.endswith("cosine")

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self.release()  # the last iteration's vectors go before this one's are allocated
        self._flat = FlatGradient(solver.trainable_parameters())
        gradient = target_gradient(self._flat, solver, target)
        (square,) = complete(solver, gradient.dot(gradient).unsqueeze(0))
        self._target, self._target_norm = gradient, square**0.5
        if not self.preconditioned:
            return
        adam = AdamStep(solver.optimizer_state(), self._flat, "optimizer_aware",
                        momentum=self.preconditioner == "adam_update")
        if not self.fixed_v:
            self._adam = adam
            return
        denominator = adam.fixed_denominator_()
        self._target = gradient.div_(denominator)
        self._inverse_square = denominator.square_().reciprocal_()
        self._square = torch.empty(min(self._flat.chunk, self._flat.numel), device=self._flat.device)

    def release(self) -> None:
        self._flat: FlatGradient | None = None
        self._target: Tensor | None = None  # g_T, or g_T / d with fixed_v
        self._target_norm = 1.0
        self._adam: AdamStep | None = None
        self._inverse_square: Tensor | None = None  # 1 / d**2 with fixed_v (the norm of Gamma_q)
        self._square: Tensor | None = None  # a chunk's g_q**2 with fixed_v

    def _terms(self, gradient: Tensor, span: slice) -> tuple[Tensor, Tensor]:
        """One chunk's ``<step, target>`` and ``|step|**2``."""
        target = self._target[span]
        if self._inverse_square is not None:
            square = torch.mul(gradient, gradient, out=self._square[: gradient.numel()])
            return gradient.dot(target), square.dot(self._inverse_square[span])
        if self._adam is None:
            step = gradient
        elif self.preconditioner == "adam_update":
            step = self._adam.direction(gradient, span).sub_(self._adam.null_direction(span))
        else:
            step = self._adam.preconditioned(gradient, span)
        return step.dot(target), step.dot(step)

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._flat is None or self._target is None:
            raise RuntimeError("OptimizerAwareInfluence.score() called before prepare()")
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        for index, candidate in enumerate(candidates):
            sums = PartialSums(self._terms)
            policy_gradient(self._flat, solver, candidate, sums)
            dot, square = complete(solver, sums.totals(2, self._flat.device))
            scores[index] = similarity(dot, square, self._target_norm, self.cosine)
        return scores
