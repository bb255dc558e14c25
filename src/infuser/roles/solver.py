"""The Solver: answers multiple-choice questions; reward 1 when its boxed choice is the golden one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.roles.policy import PolicyRole, RoleConfig
from infuser.rollout.engine import RolloutBatch, SamplingConfig


@dataclass
class Answers:
    """``n`` answers per question, prompt-major, with their 0/1 rewards."""

    questions: list[MCQuestion]
    batch: RolloutBatch
    rewards: Tensor  # float, one per row

    def pass_rates(self) -> Tensor:
        """Fraction correct per question."""
        n = len(self.batch) // max(len(self.questions), 1)
        return self.rewards.view(len(self.questions), n).mean(-1) if self.questions else torch.zeros(0)

    def rows_of(self, question_index: int) -> list[int]:
        n = len(self.batch) // len(self.questions)
        return list(range(question_index * n, (question_index + 1) * n))


class Solver(PolicyRole):
    """Answers questions; trained with Dr.GRPO advantages on questions it sometimes gets right."""

    def __init__(self, config: RoleConfig, prompts: PromptTemplates) -> None:
        super().__init__(config)
        self.prompts = prompts

    def answer(self, questions: list[MCQuestion], num_samples: int, generator: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> Answers:
        if not questions:
            raise ValueError("Solver.answer() needs at least one question")
        batch = self.rollout([self.prompts.for_solver(q) for q in questions], num_samples, generator, sampling)
        rewards = torch.tensor(
            [float(questions[int(batch.prompt_index[row])].is_answered_by(text)) for row, text in enumerate(batch.texts)]
        )
        return Answers(questions=questions, batch=batch, rewards=rewards)
