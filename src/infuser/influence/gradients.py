"""Per-candidate gradients reduced to a few numbers, and AdamW's next step as a function of one.

Estimators score candidates one at a time, each from one forward+backward over that candidate's
rollouts, and reduce its gradient to a few numbers (dot products, norms) before the next one: the
N x P matrix of all candidate gradients never exists, and neither does one candidate's flat
gradient. :meth:`FlatGradient.reduce` hands each parameter's gradient, in the coordinates of one
flat vector (the parameters' order), to a reduction *during the backward*, as soon as autograd has
accumulated it (a post-accumulate-grad hook), and frees it: the gradient is read once, while it
is still in cache, and no gradient-sized buffer is zeroed, accumulated into or kept.

Reductions run chunk by chunk (:data:`CHUNK_ELEMENTS`; a cache-sized slice on CPU, large slices on
an accelerator): one chunk's preconditioner, step and dot products are computed before the next
chunk is touched, into a chunk-sized scratch buffer. The vector work then reads the gradient, the
target gradient and AdamW's second moment once per candidate, and the preconditioned step is
never materialised whole (:class:`AdamStep`). Within a chunk sums are float32 (the precision
autograd produced the gradient in); the chunks' sums are added in float64. On CPU this is what
makes the vector work cheap: float64 copies and fresh model-sized allocations once cost 15x the
arithmetic; model-sized passes (zeroing and accumulating a flat buffer, one pass per elementwise
operation) put a candidate at 1.20x a forward+backward at 34M parameters, 1.07x without them
(see ``docs/benchmarks.md``).

Across processes (see :mod:`infuser.influence.base` and :class:`infuser.distributed.Processes`):
:func:`target_gradient` sums the processes' shares of ``g_T`` when the target rows are split
among them, and every sum over parameters an estimator computes (a dot product, a squared norm)
goes through :func:`complete`, which adds the other processes' parts when a strategy shards the
parameters; the estimators are written once for both layouts. Under FSDP the parameters are
DTensors whose sharded gradients the strategy writes after its reduce-scatter (no autograd hook
sees them): a flat buffer then receives them (each ``.grad`` is a DTensor around the buffer's
view), and is reduced after the backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from torch.distributed import tensor as dtensor

    from infuser.influence.base import PolicyGradientModel
    from infuser.rollout.rows import ScoredRollouts
else:  # parsing a command line imports this module (through the estimators), never torch
    torch = lazy_import("torch")
    dtensor = lazy_import("torch.distributed.tensor")

T = TypeVar("T")


CHUNK_ELEMENTS = {"cpu": 1 << 16}  # 256 KiB of float32: a chunk's operands stay in a core's L2 cache
DEFAULT_CHUNK_ELEMENTS = 1 << 24  # accelerators: few enough kernel launches, a 64 MiB scratch buffer


def chunk_elements(device: torch.device) -> int:
    """How many coordinates a reduction takes at a time on ``device``."""
    return CHUNK_ELEMENTS.get(device.type, DEFAULT_CHUNK_ELEMENTS)


Reduction = Callable[["Tensor", slice], None]
"""Takes one chunk of a float32 gradient and where it sits in the flat vector (``span``)."""


class FlatGradient:
    """The gradient of a fixed list of parameters, in the coordinates of one flat vector.

    :meth:`reduce` backpropagates a loss, micro-batch by micro-batch, and hands the gradient to a
    :data:`Reduction` chunk by chunk. ``backward(inputs=...)`` restricts the pass to these
    parameters, so other trainable weights cost nothing.

    Sharded parameters (FSDP's DTensors) are flattened by their local shards; their gradients go
    through a flat buffer (see the module docstring), allocated at the first backward and kept
    until this object is dropped. Their backward cannot be restricted (autograd reaches the
    gathered copies, not these parameters), so other trainable parameters receive gradients too;
    the next update's ``zero_grad`` clears them.
    """

    def __init__(self, parameters: list[nn.Parameter]) -> None:
        if not parameters:
            raise ValueError("FlatGradient needs at least one parameter")
        dtypes = {p.dtype for p in parameters}
        if len(dtypes) > 1:
            raise TypeError(f"FlatGradient needs parameters of one dtype, got {sorted(map(str, dtypes))}")
        self.parameters = parameters
        self._sharded = isinstance(parameters[0], dtensor.DTensor)
        self.spans: list[slice] = []
        offset = 0
        for p in parameters:
            size = _local(p).numel()
            self.spans.append(slice(offset, offset + size))
            offset += size
        self.numel = offset
        self.device = parameters[0].device
        self.chunk = chunk_elements(self.device)
        self._buffer: Tensor | None = None
        self._views: list[Tensor] = []

    def reduce(self, loss_of: Callable[[T], Tensor], pieces: Sequence[T], reduction: Reduction) -> None:
        """Backpropagate ``loss_of(piece)`` for each piece, one at a time (so one micro-batch's graph
        is alive at a time; autograd accumulates the gradients), and hand the gradient of their sum
        to ``reduction``, chunk by chunk. Coordinates without a gradient (no pieces, or a parameter
        the loss does not reach) are zero and are not handed over. The parameters' own ``.grad``
        are back afterwards."""
        saved = [p.grad for p in self.parameters]
        try:
            if self._sharded:
                self._reduce_through_buffer(loss_of, pieces, reduction)
            else:
                self._reduce_in_backward(loss_of, pieces, reduction)
        finally:
            for p, grad in zip(self.parameters, saved):
                p.grad = grad

    def _hand_over(self, gradient: Tensor, span: slice, reduction: Reduction) -> None:
        flat = gradient.reshape(-1)
        for start in range(0, flat.numel(), self.chunk):
            chunk = flat[start : start + self.chunk]
            reduction(chunk.float(), slice(span.start + start, span.start + start + chunk.numel()))

    def _reduce_in_backward(self, loss_of: Callable[[T], Tensor], pieces: Sequence[T], reduction: Reduction) -> None:
        """Earlier pieces accumulate into ``.grad``; during the last backward each parameter's
        gradient is reduced as soon as it is complete, then freed."""
        for p in self.parameters:
            p.grad = None
        index = {id(p): i for i, p in enumerate(self.parameters)}
        handed: set[int] = set()

        def hand_over(p: nn.Parameter) -> None:
            i = index[id(p)]
            self._hand_over(p.grad, self.spans[i], reduction)
            handed.add(i)
            p.grad = None

        for number, piece in enumerate(pieces):
            loss = loss_of(piece)  # first: on a shared base it makes these parameters require grad
            last = number == len(pieces) - 1
            handles = [p.register_post_accumulate_grad_hook(hand_over) for p in self.parameters] if last else []
            try:
                loss.backward(inputs=self.parameters)
            finally:
                for handle in handles:
                    handle.remove()
        for i, p in enumerate(self.parameters):  # reached by an earlier piece only
            if p.grad is not None and i not in handed:
                self._hand_over(p.grad, self.spans[i], reduction)

    def _reduce_through_buffer(self, loss_of: Callable[[T], Tensor], pieces: Sequence[T],
                               reduction: Reduction) -> None:
        """Sharded parameters: the strategy accumulates into ``.grad`` views of a flat buffer."""
        if self._buffer is None:
            self._buffer = torch.zeros(self.numel, dtype=self.parameters[0].dtype, device=self.device)
            for p, span in zip(self.parameters, self.spans):
                view = self._buffer[span].view_as(_local(p))
                self._views.append(dtensor.DTensor.from_local(view, p.device_mesh, p.placements, run_check=False,
                                                      shape=p.shape, stride=p.stride()))
        self._buffer.zero_()
        for p, view in zip(self.parameters, self._views):
            p.grad = view
        for piece in pieces:
            loss_of(piece).backward()
        if pieces:
            for span in self.spans:
                self._hand_over(self._buffer[span], span, reduction)

    def flatten_state(self, optimizer: torch.optim.Optimizer, key: str) -> Tensor:
        """One optimizer-state tensor per parameter (e.g. AdamW's ``exp_avg_sq``), flat, float32.

        Parameters without state yet (before the first step) contribute zeros.
        """
        flat = torch.zeros(self.numel, dtype=torch.float32, device=self.device)
        for p, span in zip(self.parameters, self.spans):
            state = optimizer.state.get(p, {})
            if key in state:
                flat[span].copy_(_local(state[key]).reshape(-1))
        return flat


class PartialSums:
    """Sums over the coordinates of a flat vector, taken chunk by chunk (a :data:`Reduction`):
    ``terms(chunk, span)`` gives each sum's float32 value over one chunk; the chunks' values are
    added in float64."""

    def __init__(self, terms: Callable[[Tensor, slice], Sequence[Tensor]]) -> None:
        self.terms = terms
        self._parts: list[Tensor] = []

    def __call__(self, chunk: Tensor, span: slice) -> None:
        self._parts.append(torch.stack(list(self.terms(chunk, span))))

    def totals(self, count: int, device: torch.device) -> Tensor:
        """The ``count`` sums, float64; zeros when no chunk came (a zero gradient)."""
        if not self._parts:
            return torch.zeros(count, dtype=torch.float64, device=device)
        return torch.stack(self._parts).double().sum(0)


def _local(tensor: Tensor) -> Tensor:
    """This process's shard of a DTensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, dtensor.DTensor) else tensor


class AdamStep:
    """AdamW's next update direction for the parameters of a :class:`FlatGradient`, given the
    gradient it would see, one chunk at a time.

    With moments ``m``, ``v`` after ``s`` steps the next step is ``t = s + 1``, and::

        v'_hat = (beta2 * v + (1 - beta2) * g**2) / (1 - beta2**t)
        m'_hat = (beta1 * m + (1 - beta1) * g) / (1 - beta1**t)

    The moments are kept flat and pre-scaled (``v_term = beta2 * v / (1 - beta2**t)``, likewise
    ``m``); a chunk's direction is written into a chunk-sized scratch buffer of this object and
    overwritten by the next call.

    Args:
        optimizer: the Solver's live optimizer.
        flat: whose parameters (and layout).
        who: the estimator, for errors.
        momentum: keep the first moment too, for :meth:`direction`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, flat: FlatGradient, who: str, momentum: bool = False) -> None:
        group = next((g for g in optimizer.param_groups if any(p is flat.parameters[0] for p in g["params"])),
                     optimizer.param_groups[0])
        if "betas" not in group or "eps" not in group:
            raise TypeError(f"{who} needs an Adam-family optimizer (betas, eps, exp_avg_sq); "
                            f"the Solver's is {type(optimizer).__name__}")
        steps = [float(optimizer.state[p]["step"]) for p in flat.parameters if "step" in optimizer.state.get(p, {})]
        self.next_step = (max(steps) if steps else 0.0) + 1.0
        beta1, self.beta2 = (float(b) for b in group["betas"])
        self.eps = float(group["eps"])
        correction1, correction2 = 1.0 - beta1**self.next_step, 1.0 - self.beta2**self.next_step
        self.v_term = flat.flatten_state(optimizer, "exp_avg_sq").mul_(self.beta2 / correction2)
        self._g2_weight = (1.0 - self.beta2) / correction2
        self._m_term = flat.flatten_state(optimizer, "exp_avg").mul_(beta1 / correction1) if momentum else None
        self._g_weight = (1.0 - beta1) / correction1
        size = min(flat.chunk, flat.numel)
        self._denominator = torch.empty(size, device=flat.device)
        self._out = torch.empty(size, device=flat.device) if momentum else None

    def _denominator_of(self, gradient: Tensor, span: slice) -> Tensor:
        """``sqrt(v'_hat) + eps`` over one chunk (into a scratch buffer)."""
        denominator = self._denominator[: gradient.numel()]
        torch.addcmul(self.v_term[span], gradient, gradient, value=self._g2_weight, out=denominator)
        return denominator.sqrt_().add_(self.eps)

    def preconditioned(self, gradient: Tensor, span: slice) -> Tensor:
        """``g / (sqrt(v'_hat) + eps)`` over one chunk: the step without the first moment (INFUSER's ``Gamma``)."""
        denominator = self._denominator_of(gradient, span)
        return torch.div(gradient, denominator, out=denominator)

    def direction(self, gradient: Tensor, span: slice) -> Tensor:
        """``m'_hat / (sqrt(v'_hat) + eps)`` over one chunk: the whole update direction, momentum included."""
        if self._m_term is None:
            raise RuntimeError("AdamStep.direction() needs momentum=True")
        out = self._out[: gradient.numel()]
        torch.add(self._m_term[span], gradient, alpha=self._g_weight, out=out)
        return out.div_(self._denominator_of(gradient, span))

    def null_direction(self, span: slice) -> Tensor:
        """``U(0)`` over one chunk: the update a zero gradient would take (momentum alone), so that
        ``direction(g) - null_direction()`` is what the gradient ``g`` changes in the update."""
        if self._m_term is None:
            raise RuntimeError("AdamStep.null_direction() needs momentum=True")
        return self._m_term[span] / self.v_term[span].sqrt().add_(self.eps)

    def fixed_denominator_(self) -> Tensor:
        """``sqrt(v / (1 - beta2**t)) + eps``, the preconditioner without any candidate term, made in
        place of the second moment (this object can compute nothing else afterwards)."""
        denominator, self.v_term = self.v_term.div_(self.beta2).sqrt_().add_(self.eps), None
        return denominator


def policy_gradient(flat: FlatGradient, solver: PolicyGradientModel, rollouts: ScoredRollouts,
                    reduction: Reduction) -> None:
    """Hand the gradient of the Solver's surrogate loss over ``rollouts`` to ``reduction`` (see
    :meth:`FlatGradient.reduce`), accumulated over the Solver's micro-batches: one micro-batch's
    activations are alive at a time, however many rows ``rollouts`` has.

    Under a sharding strategy ``rollouts`` is this process's share of rows that every process
    differentiates together, and the reduction sees the gradient of all of them (this process's
    parameter shard of it)."""
    undo = solver.processes.undo_strategy_mean
    flat.reduce(solver.surrogate_loss, solver.micro_batches(rollouts), lambda chunk, span: reduction(undo(chunk), span))


def target_gradient(flat: FlatGradient, solver: PolicyGradientModel, target: ScoredRollouts) -> Tensor:
    """``g_T``: the gradient of the Solver's surrogate loss over the whole target set, as a new flat
    float32 tensor (of this process's parameter shard when a strategy shards the parameters).

    Data parallel: each process differentiates its share of the target rollouts, normalised by the
    whole set's totals (``target.totals``), and the shares are summed over the processes: every
    process then holds the single-process gradient. A process whose share is empty adds zeros.
    """
    gradient = torch.zeros(flat.numel, dtype=torch.float32, device=flat.device)
    policy_gradient(flat, solver, target, lambda chunk, span: gradient[span].copy_(chunk))
    return solver.processes.sum_row_shares(gradient)


def complete(solver: PolicyGradientModel, sums: Tensor) -> list[float]:
    """Sums over parameters (dot products, squared norms) of this process's flat vectors, completed
    by the other processes' parts when each holds a shard of the parameters; one collective for
    all of them, none when every process holds every parameter."""
    return solver.processes.sum_parameter_shards(sums.double()).tolist()


def similarity(dot: float, square: float, target_norm: float, cosine: bool) -> float:
    """The inner product, or the cosine given the candidate side's squared norm and the target's norm."""
    return dot / max(math.sqrt(square) * target_norm, 1e-30) if cosine else dot
