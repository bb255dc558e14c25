"""The Generator: reads document chunks and drafts questions (of its :class:`~infuser.tasks.base.Task`)."""

from __future__ import annotations

import random

import torch

from infuser.config import RoleConfig
from infuser.data.documents import Document
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import InvalidQuestion, Question
from infuser.models import SharedBase
from infuser.roles.policy import PolicyRole
from infuser.rollout.rows import Drafts, SplitRollouts
from infuser.tasks.base import Task
from infuser.tasks.multiple_choice import MultipleChoiceTask


class Generator(PolicyRole):
    """Drafts ``k`` questions per document; trained on influence rewards with DuGRPO advantages."""

    adapter_name = "generator"

    def __init__(self, config: RoleConfig, prompts: PromptTemplates, task: Task | None = None, *,
                 device: torch.device | None = None, shared: SharedBase | None = None) -> None:
        super().__init__(config, device, shared)
        self.prompts = prompts
        self.task = task or MultipleChoiceTask()

    def draft(self, documents: list[Document], questions_per_document: int, rng: random.Random,
              stream: torch.Generator | None = None) -> Drafts:
        """Draft ``questions_per_document`` questions per document. Every process parses every row
        (gathered texts) with the same ``rng``, so options are shuffled alike on every process and
        as one process would shuffle them."""
        prompts = [self.chat.render(self.prompts.for_generator(doc.text)) for doc in documents]
        return self._parsed(documents, self.sample(prompts, questions_per_document, stream), rng)

    def scripted(self, documents: list[Document], questions_per_document: int, texts: list[str],
                 rng: random.Random) -> Drafts:
        """Drafts written by rule instead of sampled (a scripted arm: ``texts``, prompt-major),
        parsed and validated exactly as sampled drafts are. They must not train the Generator
        (see :meth:`PolicyRole.written`)."""
        prompts = [self.chat.render(self.prompts.for_generator(doc.text)) for doc in documents]
        return self._parsed(documents, self.written(prompts, texts, questions_per_document), rng)

    def _parsed(self, documents: list[Document], rollouts: SplitRollouts, rng: random.Random) -> Drafts:
        k = rollouts.num_samples
        complete = [row for row in range(len(rollouts.texts)) if not bool(rollouts.truncated[row])]
        parsed: list[Question | InvalidQuestion] = [InvalidQuestion("truncated", text) for text in rollouts.texts]
        drafted = self.task.parse_drafts([rollouts.texts[row] for row in complete],
                                         [f"{documents[row // k].id}#q{row % k}" for row in complete], rng)
        for row, item in zip(complete, drafted, strict=True):
            parsed[row] = item
        return Drafts(documents=documents, rollouts=rollouts, parsed=parsed)
