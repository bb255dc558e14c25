"""The Solver: answers multiple-choice questions; reward 1 when its boxed choice is the golden one."""

from __future__ import annotations

import torch

from infuser.config import RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.models import SharedBase
from infuser.roles.policy import PolicyRole
from infuser.rollout.rows import Answers
from infuser.rollout.scoring import exact_probabilities
from infuser.sharding import gathered


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
        rollouts = self.sample([self.chat.render(self.prompts.for_solver(q)) for q in questions], num_samples, stream,
                               sampling)
        choices = [questions[row // num_samples].choice_in(text) for row, text in enumerate(rollouts.texts)]
        rewards = torch.tensor([float(choice == questions[row // num_samples].answer_letter)
                                for row, choice in enumerate(choices)])
        return Answers(questions=questions, rollouts=rollouts, rewards=rewards, choices=choices)

    def exact_accuracy(self, questions: list[MCQuestion], completions: list[str], temperature: float) -> float:
        """The mean over ``questions`` of the Solver's teacher-forced probability of writing each
        one's canonical completion (:func:`~infuser.rollout.scoring.exact_probabilities`): an
        accuracy without sampling noise. Each process scores its shard; under sharded parameters
        every process scores every question on the gathered model, as sampling does."""
        self.activate()
        prompts = [self.chat.render(self.prompts.for_solver(q)) for q in questions]
        batch_size = self.config.sampling.batch_size
        if self.processes.shards_parameters:
            with gathered(self.model):
                probabilities = exact_probabilities(self.model, self.tokenizer, prompts, completions, temperature,
                                                    batch_size, self.chat.end_id).tolist()
        else:
            shard = self.processes.shard(len(questions))
            own = (exact_probabilities(self.model, self.tokenizer, prompts[shard.start : shard.stop],
                                       completions[shard.start : shard.stop], temperature, batch_size,
                                       self.chat.end_id).tolist()
                   if shard else [])
            probabilities = self.processes.gather(own)
        return sum(probabilities) / len(probabilities)
