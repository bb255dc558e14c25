"""The task interface: what is drafted, how a draft is parsed and validated, how the Solver reads
a question and how its answer is checked.

The loop, the influence estimators and the advantage estimators never look inside a question:
they see drafts (valid or not, with a reason), prompts (a question renders itself, which fills
``{question}`` in ``prompts.solver``), and one reward per answer. Everything that
depends on what a question *is* sits behind :class:`Task`, so that a new kind of question (a
programming problem checked by running tests, say) is one registered class, selected in YAML
(``task: NAME``), not a change to the loop.

Model output is untrusted on both sides: :meth:`Task.parse_draft` reads Generator text and
:meth:`Task.grade` reads Solver text; neither may raise on any string, and neither may evaluate
it in the trainer's process (a task that runs code runs it in a sandbox).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from infuser.data.questions import InvalidQuestion, Question
from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: parsing a command line imports this module, never torch
    from torch import Tensor

    from infuser.config import RunSetup


@dataclass(frozen=True)
class Graded:
    """The Solver's answers to a task's questions, checked.

    Attributes:
        rewards: one per answer, float32, 1 for right and 0 for wrong (a task may give partial
            credit in between).
        answers: what each answer gives, as a short comparable string ("" when it gives none):
            what a majority vote over several answers to one question counts.
    """

    rewards: Tensor
    answers: list[str]


class Task(ABC):
    """One kind of question the Generator and the Solver co-evolve on.

    Subclass it and register the class under the ``infuser.task`` entry-point group; its
    ``__init__`` arguments become the ``init_args`` of ``task:`` in YAML.
    """

    def check_setup(self, setup: RunSetup) -> None:
        """Refuse a run this task cannot serve, before any model loads: raise
        :class:`~infuser.config.ConfigurationError` naming the key. The default accepts every run."""

    def check_processes(self, processes: int) -> None:
        """Refuse a run over ``processes`` processes, once they are known (after launch), when the
        task cannot give every process the same outcomes. The default accepts any number."""

    @abstractmethod
    def parse_draft(self, text: str, id: str, rng: random.Random) -> Question | InvalidQuestion:
        """The question a Generator draft states, ready to ask (named ``id``; ``rng`` for any
        randomisation, e.g. the order of options, drawn alike on every process), or why it is
        unusable. Never raises on any string."""

    def parse_drafts(self, texts: Sequence[str], ids: Sequence[str], rng: random.Random
                     ) -> list[Question | InvalidQuestion]:
        """:meth:`parse_draft` of every draft of an iteration, in order. A task whose validation
        runs programs overrides it to run them as one batch through its executor's pool."""
        return [self.parse_draft(text, id, rng) for text, id in zip(texts, ids, strict=True)]

    @abstractmethod
    def grade(self, questions: Sequence[Question], texts: Sequence[str], num_samples: int) -> Graded:
        """Check answers: ``texts[row]`` answers ``questions[row // num_samples]``."""
