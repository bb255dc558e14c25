"""The Solver: answers multiple-choice questions; reward 1 when its boxed choice is the golden one."""

from __future__ import annotations

import torch

from infuser.config import RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.models import SharedBase
from infuser.roles.policy import PolicyRole
from infuser.rollout.rows import Answers


class Solver(PolicyRole):
    """Answers questions; trained with Dr.GRPO advantages on questions it sometimes gets right."""

    adapter_name = "solver"

    def __init__(self, config: RoleConfig, prompts: PromptTemplates, *, device: torch.device | None = None,
                 shared: SharedBase | None = None) -> None:
        super().__init__(config, device, shared)
        self.prompts = prompts

    def answer(self, questions: list[MCQuestion], num_samples: int, stream: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> Answers:
        if not questions:
            raise ValueError("Solver.answer() needs at least one question")
        rollouts = self.sample([self.prompts.for_solver(q) for q in questions], num_samples, stream, sampling)
        choices = [questions[row // num_samples].choice_in(text) for row, text in enumerate(rollouts.texts)]
        rewards = torch.tensor([float(choice == questions[row // num_samples].answer_letter)
                                for row, choice in enumerate(choices)])
        return Answers(questions=questions, rollouts=rollouts, rewards=rewards, choices=choices)
