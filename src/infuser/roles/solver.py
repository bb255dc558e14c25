"""The Solver: answers questions; its reward per answer is its :class:`~infuser.tasks.base.Task`'s check."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from infuser.config import RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import Question
from infuser.models import SharedBase
from infuser.roles.policy import PolicyRole
from infuser.rollout.representations import prompt_representations
from infuser.rollout.rows import Answers
from infuser.rollout.scoring import exact_probabilities
from infuser.sharding import gathered
from infuser.tasks.base import Task
from infuser.tasks.multiple_choice import MultipleChoiceTask

T = TypeVar("T")


class Solver(PolicyRole):
    """Answers questions; trained with Dr.GRPO advantages on questions it sometimes gets right."""

    adapter_name = "solver"

    def __init__(self, config: RoleConfig, prompts: PromptTemplates, task: Task | None = None, *,
                 device: torch.device | None = None, shared: SharedBase | None = None) -> None:
        super().__init__(config, device, shared)
        self.prompts = prompts
        self.task = task or MultipleChoiceTask()

    def answer(self, questions: list[Question], num_samples: int, stream: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> Answers:
        if not questions:
            raise ValueError("Solver.answer() needs at least one question")
        rollouts = self.sample(self._prompts(questions), num_samples, stream, sampling)
        graded = self.task.grade(questions, rollouts.texts, num_samples)
        return Answers(questions=questions, rollouts=rollouts, rewards=graded.rewards, choices=graded.answers)

    def exact_accuracy(self, questions: list[Question], completions: list[str], temperature: float) -> float:
        """The mean over ``questions`` of the Solver's teacher-forced probability of writing each
        one's canonical completion (:func:`~infuser.rollout.scoring.exact_probabilities`): an
        accuracy without sampling noise."""
        prompts = self._prompts(questions)
        probabilities = self._per_question(len(questions), lambda start, stop: exact_probabilities(
            self.model, self.tokenizer, prompts[start:stop], completions[start:stop], temperature,
            self.config.sampling.batch_size, self.chat.end_id).tolist())
        return sum(probabilities) / len(probabilities)

    def representations(self, questions: list[Question]) -> Tensor:
        """The Solver's mean-pooled last-layer hidden state of each question's prompt
        (:func:`~infuser.rollout.representations.prompt_representations`), ``(questions, hidden)``
        float32, without gradients: what a representation reward compares questions by."""
        if not questions:
            raise ValueError("Solver.representations() needs at least one question")
        prompts = self._prompts(questions)
        rows = self._per_question(len(questions), lambda start, stop: prompt_representations(
            self.model, self.tokenizer, prompts[start:stop], self.config.sampling.batch_size).tolist())
        return torch.tensor(rows, dtype=torch.float32)

    def _prompts(self, questions: list[Question]) -> list[str]:
        """Each question's prompt as the Solver reads it (through its chat template, if any)."""
        return [self.chat.render(self.prompts.for_solver(q)) for q in questions]

    def _per_question(self, count: int, compute: Callable[[int, int], list[T]]) -> list[T]:
        """``compute(start, stop)``'s values of questions ``start:stop``, of all ``count`` questions,
        in order on every process: each process computes its shard and the shards are gathered;
        under sharded parameters every process computes every question on the gathered model, as
        sampling does (a forward is then a collective that every process must make alike)."""
        self.activate()
        if self.processes.shards_parameters:
            with gathered(self.model):
                return compute(0, count)
        shard = self.processes.shard(count)
        return self.processes.gather(compute(shard.start, shard.stop) if shard else [])
