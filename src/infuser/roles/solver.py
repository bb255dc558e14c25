"""The Solver: answers multiple-choice questions; reward 1 when its boxed choice is the golden one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.distributed import SplitRollouts
from infuser.models import SharedBase
from infuser.roles.policy import PolicyRole, RoleConfig
from infuser.rollout.engine import RolloutBatch, SamplingConfig


@dataclass
class Answers:
    """``n`` answers per question, prompt-major, with their 0/1 rewards.

    Split across processes by question (a question's answers are never split): ``rollouts.batch``
    holds this process's rows; texts and ``rewards`` cover every row of every process, so pass
    rates are the same everywhere.
    """

    questions: list[MCQuestion]
    rollouts: SplitRollouts
    rewards: Tensor  # float, one per row of every process

    @property
    def batch(self) -> RolloutBatch:
        """This process's rows (every row, on one process)."""
        return self.rollouts.batch

    def pass_rates(self) -> Tensor:
        """Fraction correct per question."""
        return self.rewards.view(len(self.questions), self.rollouts.num_samples).mean(-1) if self.questions \
            else torch.zeros(0)

    def rows_of(self, question_index: int) -> list[int]:
        """The (global) rows of one question's answers."""
        n = self.rollouts.num_samples
        return list(range(question_index * n, (question_index + 1) * n))


class Solver(PolicyRole):
    """Answers questions; trained with Dr.GRPO advantages on questions it sometimes gets right."""

    adapter_name = "solver"

    def __init__(self, config: RoleConfig, prompts: PromptTemplates, *, device: torch.device | None = None,
                 shared: SharedBase | None = None) -> None:
        super().__init__(config, device, shared)
        self.prompts = prompts

    def answer(self, questions: list[MCQuestion], num_samples: int, generator: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> Answers:
        if not questions:
            raise ValueError("Solver.answer() needs at least one question")
        rollouts = self.sample([self.prompts.for_solver(q) for q in questions], num_samples, generator, sampling)
        rewards = torch.tensor(
            [float(questions[row // num_samples].is_answered_by(text)) for row, text in enumerate(rollouts.texts)]
        )
        return Answers(questions=questions, rollouts=rollouts, rewards=rewards)
