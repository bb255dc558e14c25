"""TracIn: learning-rate-weighted gradient inner products, at the live model and saved checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infuser.config import ConfigurationError
from infuser.influence.base import InfluenceEstimator, PolicyGradientModel
from infuser.influence.gradients import (
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
    from torch import Tensor, nn

    from infuser.config import RunSetup
    from infuser.rollout.rows import ScoredRollouts
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


@dataclass
class TracInCheckpoint:
    """A saved Solver state and the learning rate the run used around it.

    Attributes:
        path: a ``.safetensors`` file or a ``torch.save`` file of parameter tensors by name:
            ``solver.state_dict()``, ``solver.model.state_dict()``, or a checkpoint written by
            ``infuser fit`` (its ``solver`` entry is used). Only the Solver's trainable
            parameters are read.
        lr: the learning rate this checkpoint's term is weighted by.
        trusted: unpickle arbitrary Python objects in a ``torch.save`` file (one holding, say,
            NumPy arrays); only for files you wrote yourself. Tensors-only files, ``infuser fit``
            checkpoints among them, load without it.
    """

    path: str
    lr: float
    trusted: bool = False


@dataclass
class _Point:
    """One term of the sum: parameter values (``None``: the live ones), weight and target gradient."""

    values: list[Tensor] | None
    lr: float
    target: Tensor
    target_norm: float


class TracInInfluence(InfluenceEstimator):
    """``sum_c lr_c * <g_q(theta_c), g_T(theta_c)>`` over the live model and saved checkpoints.

    An SGD step of size ``lr`` on ``q`` lowers the target loss by about ``lr * <g_q, g_T>``, so the
    dot mode is TracIn's first-order prediction of the decrease; it ignores Adam's preconditioning
    (compare ``optimizer_aware``). Checkpoint terms replay that prediction at earlier points of
    the run, as the TracIn paper sums over checkpoints.

    Args:
        cosine: use ``cos(g_q, g_T)`` instead of the inner product in every term.
        checkpoints: saved states to add to the sum, each with its learning rate. Their values
            are read once per :meth:`prepare` and kept in memory (one copy of the trainable
            parameters per checkpoint); they are swapped into the Solver only while scoring and
            always swapped back.
        live: include the live model, weighted by the optimizer's current learning rate.
    """

    def __init__(self, cosine: bool = False, checkpoints: list[TracInCheckpoint] | None = None,
                 live: bool = True) -> None:
        self.checkpoints = list(checkpoints or [])
        if not live and not self.checkpoints:
            raise ValueError("tracin: live=false needs at least one entry in checkpoints")
        self.cosine = cosine
        self.live = live
        self.release()

    def release(self) -> None:
        self._flat: FlatGradient | None = None
        self._points: list[_Point] = []

    def check_setup(self, setup: RunSetup) -> None:
        for index, checkpoint in enumerate(self.checkpoints):
            if not Path(checkpoint.path).is_file():
                raise ConfigurationError(f"influence.init_args.checkpoints[{index}].path: no such file: "
                                         f"{checkpoint.path}")

    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        self.release()  # the last iteration's gradients and checkpoint values go first
        parameters = solver.trainable_parameters()
        self._flat = FlatGradient(parameters)
        names = _names(solver, parameters)
        self._points = []
        if self.live:
            lr = float(solver.optimizer_state().param_groups[0]["lr"])
            self._points.append(self._point(solver, target, None, lr))
        for index, checkpoint in enumerate(self.checkpoints):
            values = _read(checkpoint, names, parameters, f"tracin.checkpoints[{index}]")
            self._points.append(self._point(solver, target, values, checkpoint.lr))

    def _point(self, solver: PolicyGradientModel, target: ScoredRollouts, values: list[Tensor] | None,
               lr: float) -> _Point:
        with _swapped(self._flat.parameters, values):
            gradient = target_gradient(self._flat, solver, target)
        (square,) = complete(solver, gradient.dot(gradient).unsqueeze(0))
        return _Point(values=values, lr=lr, target=gradient, target_norm=square**0.5)

    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        if self._flat is None:
            raise RuntimeError("TracInInfluence.score() called before prepare()")
        scores = torch.zeros(len(candidates), dtype=torch.float64)
        for point in self._points:
            with _swapped(self._flat.parameters, point.values):
                for index, candidate in enumerate(candidates):
                    sums = PartialSums(lambda gradient, span: (gradient.dot(point.target[span]), gradient.dot(gradient)))
                    policy_gradient(self._flat, solver, candidate, sums)
                    dot, square = complete(solver, sums.totals(2, self._flat.device))
                    scores[index] += point.lr * similarity(dot, square, point.target_norm, self.cosine)
        return scores


@contextmanager
def _swapped(parameters: list[nn.Parameter], values: list[Tensor] | None) -> Iterator[None]:
    """``parameters`` hold ``values`` inside the block (``None``: unchanged), their own values after."""
    if values is None:
        yield
        return
    with torch.no_grad():
        saved = [p.detach().clone() for p in parameters]
        for p, value in zip(parameters, values):
            p.copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in zip(parameters, saved):
                p.copy_(value)


def _names(solver: PolicyGradientModel, parameters: list[nn.Parameter]) -> list[str]:
    by_identity = {id(p): name for name, p in solver.named_parameters()}
    return [by_identity[id(p)] for p in parameters]


def _read(checkpoint: TracInCheckpoint, names: list[str], parameters: list[nn.Parameter], key: str) -> list[Tensor]:
    """The checkpoint's values of ``parameters`` (matched by name), on their devices and dtypes."""
    path = Path(checkpoint.path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}.path: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Mapping = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=not checkpoint.trusted)
        except Exception as error:  # noqa: BLE001 - torch raises several types for a refused unpickle
            raise ValueError(f"{key}: cannot read {path} as tensors only ({type(error).__name__}); if you "
                             f"wrote it yourself, set {key}.trusted: true") from None
    if isinstance(state.get("solver"), Mapping):
        state = state["solver"]
    values = []
    for name, p in zip(names, parameters):
        # Accept names relative to the Solver (``model.…``) or to its language model (``…``).
        value = state.get(name, state.get(name.removeprefix("model.")))
        if value is None:
            sample = ", ".join(list(state)[:3])
            raise KeyError(f"{key}: {path} has no entry for parameter {name!r} (it has e.g. {sample})")
        if value.shape != p.shape:
            raise ValueError(f"{key}: {path} holds {name!r} with shape {tuple(value.shape)}, "
                             f"the Solver's is {tuple(p.shape)}")
        values.append(value.to(device=p.device, dtype=p.dtype))
    return values
