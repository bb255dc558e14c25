"""Per-candidate gradients as flat vectors, and AdamW's next step as a function of one.

Estimators score candidates one at a time, each from one forward+backward over that candidate's
rollouts, and reduce its gradient to a few numbers (dot products, norms) before the next one: the
N x P matrix of all candidate gradients never exists. ``benchmarks/influence_gradients.py``
compares this with per-parameter ``foreach`` reductions and with batching candidates (hooks on
linear layers, ``is_grads_batched``, ``torch.func``): on the toy Solver it costs ~1.05x a plain
forward+backward, ties with ``foreach`` and beats every batched variant (1.5x-3.5x, or failing
outright), of which the hooks cover only linear layers (see ``docs/benchmarks.md``).

The per-candidate vector work stays in float32 (the precision autograd produced the gradient in)
and writes into buffers allocated once: on CPU, float64 copies and fresh model-sized
allocations made it cost 15x more than the arithmetic itself (15 ms against 1 ms per candidate
for the toy Solver's 0.8M parameters).

Across processes (see :mod:`infuser.influence.base` and :class:`infuser.distributed.Processes`):
:func:`target_gradient` sums the processes' shares of ``g_T`` when the target rows are split
among them, and every sum over parameters an estimator computes (a dot product, a squared norm)
goes through :func:`complete`, which adds the other processes' parts when a strategy shards the
parameters; the estimators are written once for both layouts. Under FSDP the parameters are
DTensors: a flat gradient then holds this process's shard (the local tensors), and the strategy's
backward writes the reduced shard into the buffer's views itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from infuser.influence.base import PolicyGradientModel, ScoredRollouts
from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from torch.distributed import tensor as dtensor
else:  # parsing a command line imports this module (through the estimators), never torch
    torch = lazy_import("torch")
    dtensor = lazy_import("torch.distributed.tensor")


class FlatGradient:
    """The gradient of a fixed list of parameters, as one flat vector.

    While :meth:`attached`, each parameter's ``.grad`` is a view into a single buffer; autograd
    accumulates into an existing ``.grad`` in place, so after a backward pass the buffer *is* the
    flattened gradient. Per candidate that leaves one ``zero_()`` and one ``backward()``: no
    concatenation and no Python loop over the parameters. ``backward(inputs=...)`` restricts the
    pass to these parameters, so other trainable weights cost nothing.

    Sharded parameters (FSDP's DTensors) are flattened by their local shards, and ``.grad`` is a
    DTensor around the buffer's view, into which the strategy's reduce-scatter accumulates. Their
    backward cannot be restricted (autograd reaches the gathered copies, not these parameters), so
    other trainable parameters receive gradients too; the next update's ``zero_grad`` clears them.
    """

    def __init__(self, parameters: list[nn.Parameter]) -> None:
        if not parameters:
            raise ValueError("FlatGradient needs at least one parameter")
        dtypes = {p.dtype for p in parameters}
        if len(dtypes) > 1:
            raise TypeError(f"FlatGradient needs parameters of one dtype, got {sorted(map(str, dtypes))}")
        self.parameters = parameters
        self._sharded = isinstance(parameters[0], dtensor.DTensor)
        shards = [_local(p) for p in parameters]
        self.numel = sum(shard.numel() for shard in shards)
        self.buffer = torch.zeros(self.numel, dtype=parameters[0].dtype, device=parameters[0].device)
        self._views = []
        offset = 0
        for p, shard in zip(parameters, shards):
            view = self.buffer[offset : offset + shard.numel()].view_as(shard)
            if self._sharded:
                view = dtensor.DTensor.from_local(view, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                                  stride=p.stride())
            self._views.append(view)
            offset += shard.numel()
        self._attached = False

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Point the parameters' ``.grad`` at the buffer; their own gradients are back afterwards."""
        saved = [p.grad for p in self.parameters]
        for p, view in zip(self.parameters, self._views):
            p.grad = view
        self._attached = True
        try:
            yield
        finally:
            self._attached = False
            for p, grad in zip(self.parameters, saved):
                p.grad = grad

    def of(self, losses: Iterable[Tensor]) -> Tensor:
        """The flat gradient of the sum of ``losses`` in float32: the shared buffer, overwritten by
        the next call (cheapest inside :meth:`attached`, which then spans a whole batch of
        candidates).

        Each loss is backpropagated before the next one is drawn, so a generator of micro-batch
        losses keeps one micro-batch's graph alive at a time; autograd accumulates into the
        buffer. No losses at all: a zero gradient.
        """
        if not self._attached:
            with self.attached():
                return self.of(losses)
        self.buffer.zero_()
        for loss in losses:
            loss.backward(**({} if self._sharded else {"inputs": self.parameters}))
        return self.buffer if self.buffer.dtype == torch.float32 else self.buffer.float()

    def flatten_state(self, optimizer: torch.optim.Optimizer, key: str) -> Tensor:
        """One optimizer-state tensor per parameter (e.g. AdamW's ``exp_avg_sq``), flat, float32.

        Parameters without state yet (before the first step) contribute zeros.
        """
        parts = []
        for p in self.parameters:
            state = optimizer.state.get(p, {})
            parts.append(_local(state[key]).reshape(-1).float() if key in state
                         else torch.zeros(_local(p).numel(), device=p.device))
        return torch.cat(parts)


def _local(tensor: Tensor) -> Tensor:
    """This process's shard of a DTensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, dtensor.DTensor) else tensor


class AdamStep:
    """AdamW's next update direction for the parameters of a :class:`FlatGradient`, given the
    gradient it would see.

    With moments ``m``, ``v`` after ``s`` steps the next step is ``t = s + 1``, and::

        v'_hat = (beta2 * v + (1 - beta2) * g**2) / (1 - beta2**t)
        m'_hat = (beta1 * m + (1 - beta1) * g) / (1 - beta1**t)

    Results are written into a buffer of this object and overwritten by the next call.

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
        self._v_term = flat.flatten_state(optimizer, "exp_avg_sq").mul_(self.beta2 / correction2)
        self._g2_weight = (1.0 - self.beta2) / correction2
        self._m_term = flat.flatten_state(optimizer, "exp_avg").mul_(beta1 / correction1) if momentum else None
        self._g_weight = (1.0 - beta1) / correction1
        self._out = torch.empty_like(self._v_term)
        self._denominator = torch.empty_like(self._v_term)

    def _denominator_of(self, gradient: Tensor) -> Tensor:
        """``sqrt(v'_hat) + eps`` (into a buffer)."""
        torch.addcmul(self._v_term, gradient, gradient, value=self._g2_weight, out=self._denominator)
        return self._denominator.sqrt_().add_(self.eps)

    def preconditioned(self, gradient: Tensor) -> Tensor:
        """``g / (sqrt(v'_hat) + eps)``: the step without the first moment (INFUSER's ``Gamma``)."""
        return torch.div(gradient, self._denominator_of(gradient), out=self._out)

    def direction(self, gradient: Tensor) -> Tensor:
        """``m'_hat / (sqrt(v'_hat) + eps)``: the whole update direction, momentum included."""
        if self._m_term is None:
            raise RuntimeError("AdamStep.direction() needs momentum=True")
        torch.add(self._m_term, gradient, alpha=self._g_weight, out=self._out)
        return self._out.div_(self._denominator_of(gradient))

    def fixed_denominator(self) -> Tensor:
        """``sqrt(v / (1 - beta2**t)) + eps``: the preconditioner without any candidate term."""
        return self._v_term.div(self.beta2).sqrt_().add_(self.eps)


def policy_gradient(flat: FlatGradient, solver: PolicyGradientModel, rollouts: ScoredRollouts) -> Tensor:
    """The flat gradient of the Solver's surrogate loss over ``rollouts`` (:meth:`FlatGradient.of`'s
    shared buffer), accumulated over the Solver's micro-batches: one micro-batch's activations
    are alive at a time, however many rows ``rollouts`` has.

    Under a sharding strategy ``rollouts`` is this process's share of rows that every process
    differentiates together, and the result is the gradient of all of them (this process's
    parameter shard of it)."""
    gradient = flat.of(solver.surrogate_loss(piece) for piece in solver.micro_batches(rollouts))
    return solver.processes.undo_strategy_mean(gradient)


def target_gradient(flat: FlatGradient, solver: PolicyGradientModel, target: ScoredRollouts) -> Tensor:
    """``g_T``: the gradient of the Solver's surrogate loss over the whole target set, as a new flat
    float32 tensor (of this process's parameter shard when a strategy shards the parameters).

    Data parallel: each process differentiates its share of the target rollouts, normalised by the
    whole set's totals (``target.totals``), and the shares are summed over the processes: every
    process then holds the single-process gradient. A process whose share is empty adds zeros.
    """
    return solver.processes.sum_row_shares(policy_gradient(flat, solver, target).clone())


def complete(solver: PolicyGradientModel, *partials: Tensor) -> list[float]:
    """Sums over parameters (dot products, squared norms) of this process's flat vectors, completed
    by the other processes' parts when each holds a shard of the parameters; one collective for
    all of them, none when every process holds every parameter."""
    return solver.processes.sum_parameter_shards(torch.stack(partials).double()).tolist()


def similarity(dot: float, square: float, target_norm: float, cosine: bool) -> float:
    """The inner product, or the cosine given the candidate side's squared norm and the target's norm."""
    return dot / max(math.sqrt(square) * target_norm, 1e-30) if cosine else dot
