"""LESS-style influence: LoRA gradients only, Adam-adjusted, optionally randomly projected."""

from __future__ import annotations

from collections.abc import Sequence

from infuser.config import ConfigurationError
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
from infuser.influence.projection import CountSketch
from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from infuser.config import RunSetup
    from infuser.rollout.rows import ScoredRollouts
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


class LoraGradInfluence(InfluenceEstimator):
    """Similarity of a candidate's LoRA-gradient feature to the target's LoRA gradient.

    As in LESS: only the adapter's parameters (``lora_A`` / ``lora_B``) are differentiated, the
    candidate side optionally becomes Adam's update direction ``m'_hat / (sqrt(v'_hat) + eps)``
    (the moments as the Solver's next step would see them, the first moment included), the
    target side stays a plain gradient, and both may be projected to ``projection_dim`` numbers
    with a fixed-seed count sketch (:mod:`infuser.influence.projection`).

    The Solver must train a LoRA adapter (``solver.model.lora``). The saving over
    ``optimizer_aware`` is in the backward pass (no gradients of the base weights) and in the
    vector work (adapter-sized or ``projection_dim``-sized instead of model-sized).

    Args:
        adam: Adam-adjust the candidate feature (LESS's default); off: the raw gradient.
        projection_dim: project both sides to this many dimensions; ``None`` keeps them whole.
        seed: seed of the projection.
        cosine: cosine similarity (LESS, in ``[-1, 1]``); off: the inner product.
    """

    def __init__(self, adam: bool = True, projection_dim: int | None = 8192, seed: int = 0, cosine: bool = True) -> None:
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1 or null, got {projection_dim}")
        self.adam = adam
        self.projection_dim = projection_dim
        self.seed = seed
        self.cosine = cosine
        self.release()

    def release(self) -> None:
        self._flat: FlatGradient | None = None
        self._adam: AdamStep | None = None
        self._sketch: CountSketch | None = None
        self._target: Tensor | None = None
        self._target_norm = 1.0

    def check_setup(self, setup: RunSetup) -> None:
        if setup.solver.model.lora is None:
            raise ConfigurationError("influence: lora_grad differentiates the Solver's LoRA adapter and the Solver has "
                                     "none; set solver.model.lora (e.g. --solver.model.lora '{r: 16}') or choose "
                                     "another estimator")
        if self.projection_dim is not None and setup.shards_parameters:
            raise ConfigurationError(f"influence.init_args.projection_dim: lora_grad projects whole LoRA gradients and "
                                     f"trainer.strategy {setup.strategy} splits them over processes; set "
                                     "projection_dim: null")

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self.release()  # the last iteration's vectors go before this one's are allocated
        if self.projection_dim is not None and solver.processes.shards_parameters:
            # a sketch of a shard would have to place the shard's coordinates in the whole vector
            raise NotImplementedError("lora_grad: projection_dim needs every process to hold all LoRA parameters; "
                                      "set projection_dim: null under a strategy that shards parameters")
        self._flat = FlatGradient(lora_parameters(solver))
        gradient = target_gradient(self._flat, solver, target)
        self._adam = AdamStep(solver.optimizer_state(), self._flat, "lora_grad", momentum=True) if self.adam else None
        self._sketch = CountSketch(self._flat.numel, self.projection_dim, self.seed, gradient.device) \
            if self.projection_dim is not None else None
        self._target = self._sketch(gradient) if self._sketch is not None else gradient
        (square,) = complete(solver, self._target.dot(self._target).unsqueeze(0))
        self._target_norm = square**0.5

    def _feature(self, gradient: Tensor, span: slice) -> Tensor:
        """One chunk of the candidate's feature before projection: the gradient or Adam's direction."""
        return self._adam.direction(gradient, span) if self._adam is not None else gradient

    def _terms(self, gradient: Tensor, span: slice) -> tuple[Tensor, Tensor]:
        """One chunk's ``<feature, g_T>`` and ``|feature|**2`` (no projection)."""
        feature = self._feature(gradient, span)
        return feature.dot(self._target[span]), feature.dot(feature)

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._flat is None or self._target is None:
            raise RuntimeError("LoraGradInfluence.score() called before prepare()")
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        for index, candidate in enumerate(candidates):
            if self._sketch is not None:  # project chunk by chunk, then compare the projections
                sketch = torch.zeros_like(self._target)
                policy_gradient(self._flat, solver, candidate,
                                lambda gradient, span: self._sketch.add(sketch, self._feature(gradient, span), span))
                sums = sketch.dot(self._target).unsqueeze(0), sketch.dot(sketch).unsqueeze(0)
                dot, square = complete(solver, torch.cat(sums))
            else:
                partial = PartialSums(self._terms)
                policy_gradient(self._flat, solver, candidate, partial)
                dot, square = complete(solver, partial.totals(2, self._flat.device))
            scores[index] = similarity(dot, square, self._target_norm, self.cosine)
        return scores


def lora_parameters(solver: PolicyGradientModel) -> list[nn.Parameter]:
    """The LoRA adapter weights among the Solver's trainable parameters (peft names them ``lora_*``).

    Chosen by ``trainable_parameters()``, not ``requires_grad``: on a base shared with the
    Generator, the Generator's adapter is a LoRA weight of the same model and requires grad
    whenever the Generator's adapter is the active one.
    """
    trainable = {id(p) for p in solver.trainable_parameters()}
    found = [p for name, p in solver.named_parameters() if id(p) in trainable and ".lora_" in name]
    if not found:
        raise ValueError("lora_grad: the Solver's model has no LoRA adapter (no trainable lora_A/lora_B "
                         "parameters); set solver.model.lora (e.g. `lora: {r: 8}`) or choose another influence "
                         "estimator")
    return found
