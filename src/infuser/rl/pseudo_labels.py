"""The Solver's majority answer to each generated question: R-Zero's pseudo-label.

R-Zero (Huang et al. 2025, "R-Zero: Self-Evolving Reasoning LLM from Zero Data",
arXiv:2508.05004, sec. 3) never trusts the Challenger's answer: it samples m = 10 Solver answers
per question, takes the most frequent one as the label, and grades the Solver against it; the
share of samples that agree with it is the "empirical accuracy" its Challenger reward and its
``|p - 1/2| <= 0.25`` training filter read. ``loop.solver_labels: majority_vote`` and
``loop.pass_rate_band`` select that behaviour; this module computes the vote.

The vote is computed whatever the labels, because it also says something about the Generator:
when the Solver's majority disagrees with the golden answer, either the question is hard or the
golden answer is wrong. The ``influence_majority_gated`` reward and the metrics
``solver/majority_agrees_golden`` and ``solver/majority_correct`` read it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from infuser.data.questions import LETTERS, MCQuestion
from infuser.rollout.rows import Answers


@dataclass(frozen=True)
class MajorityVote:
    """The most frequent answer among each question's samples.

    Attributes:
        labels: per question, the graded answer most samples give (an option letter; a
            programming problem's run status), "" when none gives one; a tie goes to the answer
            sampled first, so the vote does not depend on how options are lettered.
        agrees_golden: per question (bool), whether the label is the question's golden answer.
    """

    labels: list[str]
    agrees_golden: Tensor

    @classmethod
    def of(cls, answers: Answers) -> MajorityVote:
        n = answers.rollouts.num_samples
        labels = []
        for index in range(len(answers.questions)):
            picked = Counter(choice for choice in answers.choices[index * n : (index + 1) * n] if choice)
            labels.append(picked.most_common(1)[0][0] if picked else "")  # most_common keeps first-seen order on ties
        agrees = torch.tensor([label == question.golden_answer for label, question in zip(labels, answers.questions)],
                              dtype=torch.bool)
        return cls(labels=labels, agrees_golden=agrees)

    def correct(self, answers: Answers, is_correct: Callable[[MCQuestion], bool | None]) -> list[bool | None]:
        """Per multiple-choice question, whether its label is a true answer, as ``is_correct(question)``
        judges a question's golden option (a source's ``golden_is_correct``; ``None``: it cannot
        tell, no label, or not a multiple-choice question, whose label would be a letter)."""
        verdicts = []
        for label, question in zip(self.labels, answers.questions):
            relabelled = replace(question, answer_index=LETTERS.index(label)) \
                if label and isinstance(question, MCQuestion) else None
            verdicts.append(is_correct(relabelled) if relabelled is not None else None)
        return verdicts
