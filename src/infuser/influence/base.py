"""The influence-estimator interface.

An estimator answers one question per candidate: *if the Solver took an optimizer step on this
candidate's rollouts, how much would that help on the target set?* The loop calls
:meth:`InfluenceEstimator.prepare` once per iteration with the target-side rollouts (so target
work, e.g. the target gradient ``g_T``, is done once) and then :meth:`InfluenceEstimator.score`
on batches of candidates, several times, against the same prepared state.

The contract every estimator keeps (the loop and the benchmark rely on it):

* **Orientation.** One score per candidate, in the order given; **higher means more useful**: a
  step on the candidate is predicted to *lower* the target loss. Both sides are gradients of the
  same loss (``g = dL/dtheta``), and a descent step ``-lr * g_q`` changes the target loss by about
  ``-lr * <g_q, g_T>``, so a positive inner product means the candidate helps.
* **Sign.** Positive: predicted to help; negative: predicted to hurt; zero: no predicted effect.
* **Scale.** Plain float64 numbers, comparable within one iteration only (gradients drift).
  Cosine modes lie in ``[-1, 1]``; dot modes are first-order predictions of the target-loss
  decrease, per unit learning rate unless the estimator multiplies the learning rate in.
* **No side effects.** ``score`` leaves the Solver's parameters, gradients and optimizer state as
  it found them.

Candidates with no learning signal (all answers right or all wrong) are never passed in: the
loop gives them 0 itself.

Memory. Gradients are taken over :meth:`PolicyGradientModel.micro_batches` (the Solver's
``update.micro_batch_size`` rows at a time) and accumulated, so neither the target set nor a
candidate's answers are ever forwarded in one pass: the influence stage needs the activations
of one micro-batch, like the update (:func:`~infuser.influence.gradients.policy_gradient`).

Several processes (data parallel, what the loop runs): ``prepare`` receives this process's share
of the target rollouts, normalised by the whole set's totals (:attr:`ScoredRollouts.totals`), and
:func:`~infuser.influence.gradients.target_gradient` sums the shares' gradients over the
processes, so every process holds the single-process ``g_T``; ``score`` receives this process's
own candidates and involves no other process (the loop gathers the scores). Every sum over
parameters (dot products, norms) goes through :func:`~infuser.influence.gradients.complete`: the
identity while every process holds all parameters, the completing all-reduce in the other layout.

Under a strategy that shards the parameters (FSDP) every backward reduces the gradients of every
process, so a process cannot differentiate its own candidates alone: every process receives a
share of every candidate's rows (normalised by the candidate's totals), the strategy reduces the
shares, :func:`~infuser.influence.gradients.policy_gradient` turns their mean into their sum, and
each process's flat gradients hold its parameter shard.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Protocol

from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: parsing a command line imports this module, never torch
    import torch
    from torch import Tensor, nn

    from infuser.config import RunSetup
    from infuser.distributed import Processes
    from infuser.rollout.rows import ScoredRollouts


class PolicyGradientModel(Protocol):
    """What an estimator may ask of the Solver."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the Solver's optimizer updates, in a fixed order."""
        ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """All parameters by name (``nn.Module``'s): identifies adapter weights and checkpoint entries."""
        ...

    def optimizer_state(self) -> torch.optim.Optimizer:
        """The live optimizer, with the state its next step would use."""
        ...

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """The policy-gradient loss the Solver trains on, evaluated on-policy (ratio 1), normalised
        by ``rollouts.totals`` when set."""
        ...

    def micro_batches(self, rollouts: ScoredRollouts) -> list[ScoredRollouts]:
        """``rollouts`` in pieces small enough for one forward/backward, each normalised by the
        totals of the whole, so that the pieces' surrogate losses (and gradients) add up to the
        whole's. Rows that cannot contribute to the gradient may be left out."""
        ...

    @property
    def processes(self) -> Processes:
        """The processes of the run: collectives for target gradients and sharded parameters."""
        ...


class InfluenceEstimator(ABC):
    """Scores candidate questions by their predicted usefulness for the target set.

    Subclass it and register the class under the ``infuser.influence`` entry-point group to add
    an estimator; its ``__init__`` arguments become the ``init_args`` of the YAML.
    """

    def check_setup(self, setup: RunSetup) -> None:
        """Refuse a run this estimator cannot score, before any model loads: raise
        :class:`~infuser.config.ConfigurationError` naming the keys (``lora_grad`` needs
        ``solver.model.lora``). The default accepts every run."""

    @abstractmethod
    def prepare(self, solver: PolicyGradientModel, target: ScoredRollouts) -> None:
        """Compute and keep the target-side quantities of this iteration."""

    @abstractmethod
    def score(self, solver: PolicyGradientModel, candidates: Sequence[ScoredRollouts]) -> Tensor:
        """One float64 score per candidate (CPU, shape ``(len(candidates),)``); higher = more useful."""

    def release(self) -> None:
        """Drop what :meth:`prepare` kept (target gradients, optimizer-state copies: vectors of the
        Solver's size). The loop calls it after the iteration's last :meth:`score`, so they are not
        held through the updates, the evaluation and the checkpoint; the next :meth:`prepare`
        starts from nothing. An estimator that keeps nothing large need not override it."""
