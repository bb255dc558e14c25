"""Multiple-choice questions with a golden option: the task of the paper and of every bundled world.

A draft is parsed strictly (:func:`~infuser.data.questions.parse_question`) and its options are
shuffled, so that the golden option's letter carries no habit of the Generator's. An answer is
right when the option it picks (by letter or by option text, the evaluation harness's extraction
cascade) is the golden one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from infuser.data.questions import InvalidQuestion, MCQuestion, parse_question
from infuser.lazy import TYPE_CHECKING, lazy_import
from infuser.tasks.base import Graded, Task

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch


class MultipleChoiceTask(Task):
    """Drafts in the ``Question:`` / ``A)`` ... / ``Answer:`` format; reward 1 for the golden option.

    Args:
        min_options: a draft with fewer options is invalid (``too_few_options``).
    """

    def __init__(self, min_options: int = 4) -> None:
        if min_options < 2:
            raise ValueError(f"task: min_options must be at least 2 (a question needs a choice), got {min_options}")
        self.min_options = min_options

    def parse_draft(self, text: str, id: str, rng: random.Random) -> MCQuestion | InvalidQuestion:
        item = parse_question(text, self.min_options)
        if isinstance(item, InvalidQuestion):
            return item
        return MCQuestion(question=item.question, options=item.options, answer_index=item.answer_index,
                          id=id).shuffled(rng)

    def grade(self, questions: Sequence[MCQuestion], texts: Sequence[str], num_samples: int) -> Graded:
        choices = [questions[row // num_samples].choice_in(text) for row, text in enumerate(texts)]
        rewards = torch.tensor([float(choice == questions[row // num_samples].answer_letter)
                                for row, choice in enumerate(choices)])
        return Graded(rewards=rewards, answers=choices)
