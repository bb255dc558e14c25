"""What the Generator is rewarded for: one number per valid drafted question.

INFUSER rewards a question by its influence on the target set; self-evolution baselines reward
it by how uncertain the Solver is about it. Making the reward a registered component (entry-point
group ``infuser.generator_reward``) turns "INFUSER against SPICE / R-Zero / a frozen generator"
into a one-line YAML swap, which is what ``infuser bench curriculum`` relies on::

    generator_reward: spice_variance

A reward sees :class:`DraftOutcomes` only (the Solver's pass rates and, when it asks for them,
influence scores or the Solver's representations of the questions and of the target set), so a
reward cannot reach into the models and the loop computes influence and representations only for
rewards that use them. Invalid drafts are not shown to a reward: they always get 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from infuser.lazy import TYPE_CHECKING, lazy_import

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from infuser.config import RunSetup
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


@dataclass(frozen=True)
class Representations:
    """The Solver's representation of each valid question and of each target question: its
    mean-pooled last-layer hidden state of the question's prompt
    (:meth:`~infuser.roles.solver.Solver.representations`), taken before the Solver's update.

    Attributes:
        questions: ``(valid questions, hidden)``.
        target: ``(target questions, hidden)``.
    """

    questions: Tensor
    target: Tensor


@dataclass(frozen=True)
class DraftOutcomes:
    """What is known about each valid drafted question when the Generator is rewarded.

    Attributes:
        pass_rates: the Solver's fraction of correct answers per question (float64).
        influence: the influence score per question (0 without signal, NaN when excluded), or
            ``None`` when the reward did not ask for influence.
        majority_agrees_golden: per question (bool), whether the Solver's most frequent answer
            is the Generator's golden answer (:class:`~infuser.rl.pseudo_labels.MajorityVote`);
            ``None`` where it was not computed.
        representations: the Solver's representations of the questions and of the target set,
            or ``None`` when the reward did not ask for them (``needs_representations``).
    """

    pass_rates: Tensor
    influence: Tensor | None = None
    majority_agrees_golden: Tensor | None = None
    representations: Representations | None = None


class GeneratorReward(ABC):
    """Maps the outcomes of the valid drafts to one reward each; higher is better.

    ``needs_influence`` tells the loop whether to run the target stage and the influence
    estimator: rewards that read pass rates only skip both and save their cost.
    ``needs_representations`` tells it whether to compute the Solver's representations of the
    questions and of the target set (:class:`Representations`), one forward pass without gradients.
    """

    needs_influence: bool = False
    needs_representations: bool = False

    def check_setup(self, setup: RunSetup) -> None:
        """Refuse a run this reward cannot work in, before any model loads: raise
        :class:`~infuser.config.ConfigurationError` naming the keys. The default accepts every run."""

    @abstractmethod
    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        """One float64 reward per question of ``outcomes``; NaN marks a missing reward."""


class InfluenceReward(GeneratorReward):
    """INFUSER: the question's influence score under the configured estimator (``influence:``)."""

    needs_influence = True

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        if outcomes.influence is None:
            raise ValueError("InfluenceReward needs influence scores; the loop computes them when needs_influence")
        return outcomes.influence.to(torch.float64)


class MajorityGatedInfluenceReward(GeneratorReward):
    """Influence, kept only for questions whose golden answer the Solver's majority confirms.

    Influence measures how a question's training update moves the Solver's target-set loss; it
    does not read whether the question's golden answer is right. A question with a wrong golden
    answer still moves the Solver's weights, and that move can lower the target loss (it trains
    the shared skill, or its wrong label happens to align with the target gradient), so it can
    score a positive influence and the Generator is paid for drafting it. A Generator trained on
    influence alone can therefore let its golden answers drift wrong while its mix improves.

    The gate reads the one check of a golden answer that needs no oracle: the Solver's own
    majority answer (R-Zero's pseudo-label, :mod:`infuser.rl.pseudo_labels`). Where it agrees,
    the reward is the influence; where it does not, the reward is ``min(influence, 0) - penalty``:
    never more than the ungated influence, so a disputed question can only lose reward.

    The price: a hard question with a right golden answer that most samples miss is gated too,
    so the gate pulls the curriculum toward questions whose golden answer is already the Solver's
    most frequent one. And a majority that shares the Generator's mistake (both roles start from
    one base) passes the gate: agreement is evidence, not proof.

    Args:
        penalty: subtracted from a disputed question's reward (0: the reward is only capped at 0).
    """

    needs_influence = True

    def __init__(self, penalty: float = 0.0) -> None:
        if not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"generator_reward.penalty must be finite and >= 0, got {penalty}")
        self.penalty = penalty

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        if outcomes.influence is None or outcomes.majority_agrees_golden is None:
            raise ValueError("MajorityGatedInfluenceReward needs influence scores and the Solver's majority vote; the "
                             "loop computes both when needs_influence")
        influence = outcomes.influence.to(torch.float64)
        disputed = influence.clamp(max=0.0) - self.penalty  # NaN stays NaN: a missing reward
        return torch.where(outcomes.majority_agrees_golden.bool(), influence, disputed)


class SpiceVarianceReward(GeneratorReward):
    """SPICE's variance reward ``exp(-(p(1-p) - 1/4)^2 / width)``: highest at a pass rate of 1/2.

    Args:
        width: the Gaussian's width (SPICE uses 0.02); smaller rewards only near-1/2 pass rates.
    """

    def __init__(self, width: float = 0.02) -> None:
        if not width > 0:
            raise ValueError(f"generator_reward.width must be > 0, got {width}")
        self.width = width

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        p = outcomes.pass_rates.to(torch.float64)
        return torch.exp(-((p * (1 - p) - 0.25) ** 2) / self.width)


class RZeroUncertaintyReward(GeneratorReward):
    """R-Zero's uncertainty reward ``1 - 2|p - 1/2|``: 1 at a pass rate of 1/2, 0 at 0 or 1."""

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        p = outcomes.pass_rates.to(torch.float64)
        return 1 - 2 * (p - 0.5).abs()


class HardnessReward(GeneratorReward):
    """How often the Solver fails a question it sometimes solves: ``1 - p`` for ``0 < p < 1``, else 0.

    A difficulty curriculum with no target information: it pays most for the hardest questions
    that still carry a learning signal, and nothing for questions the Solver always or never
    solves (their answers all get the same reward, so they train nothing). Unlike SPICE's and
    R-Zero's rewards it does not peak at 1/2: a question solved once in eight beats one solved half
    the time. It is the baseline that asks whether "hard but learnable" alone finds the target.
    """

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        p = outcomes.pass_rates.to(torch.float64)
        return torch.where((p > 0) & (p < 1), 1 - p, torch.zeros_like(p))


class RepresentationSimilarityReward(GeneratorReward):
    """How much the Solver's representation of a question resembles its representations of the
    target questions: a target-aware reward without gradients, the cheap alternative to influence.

    A question's representation is the Solver's mean-pooled last-layer hidden state of its prompt
    (:class:`Representations`, taken before the Solver's update). The reward is the cosine
    similarity to the target questions':

    - ``mean``: the mean over target questions of the cosine, ``q̂ · mean_t(t̂)``. That is the
      cosine to the centroid of the unit target vectors times that centroid's norm, a factor
      shared by every question of the iteration; so ``mean`` ranks questions as the cosine to
      the (unit-vector) centroid does: it rewards resembling the target set as a whole.
    - ``max``: the cosine to the nearest target question: it rewards resembling some target
      question, so a target set of several kinds pays for any one of them.

    Representations are not centred (centring on any mean of the iteration's vectors would be a
    choice tuned to the world): hidden states share a large common component (the prompt's
    format), so cosines sit near 1 and differ by little. DuGRPO's advantages are normalised per
    document group, which keeps the ranking among a group's valid drafts whatever that scale;
    an invalid draft gets 0, far below any valid one, so, as under SPICE's and R-Zero's positive
    rewards, a group with invalid drafts first teaches validity. What the Solver represents
    alike need not be what teaches it (influence measures the second): that is the question this
    baseline asks.

    Args:
        variant: ``mean`` or ``max``, as above.
    """

    needs_representations = True

    def __init__(self, variant: Literal["mean", "max"] = "mean") -> None:
        if variant not in ("mean", "max"):
            raise ValueError(f"generator_reward.variant must be 'mean' or 'max', got {variant!r}")
        self.variant = variant

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        if outcomes.representations is None:
            raise ValueError("RepresentationSimilarityReward needs the Solver's representations; the loop computes "
                             "them when needs_representations")
        questions = torch.nn.functional.normalize(outcomes.representations.questions.double(), dim=-1)
        target = torch.nn.functional.normalize(outcomes.representations.target.double(), dim=-1)
        cosines = questions @ target.T
        return cosines.mean(-1) if self.variant == "mean" else cosines.amax(-1)


class ConstantReward(GeneratorReward):
    """The same reward for every valid question: the Generator learns only to stay valid
    (invalid drafts get 0), never what to ask. With ``value`` 0 no update has a signal at all.

    Args:
        value: the reward of every valid question.
    """

    def __init__(self, value: float = 0.0) -> None:
        if not math.isfinite(value):
            raise ValueError(f"generator_reward.value must be finite, got {value}")
        self.value = value

    def __call__(self, outcomes: DraftOutcomes) -> Tensor:
        return torch.full_like(outcomes.pass_rates, self.value, dtype=torch.float64)
