"""Multiple-choice questions: the currency between the Generator, the Solver and the target set.

The Generator writes questions in a small line-oriented format; :func:`parse_question` reads it
strictly and returns either a :class:`MCQuestion` or an :class:`InvalidQuestion` with a reason.
Model output is untrusted: parsing is bounded in size, uses only anchored regular expressions
without nested quantifiers, and never raises on bad text.

Format (option lines ``A)`` .. ``J)``, at least ``min_options``)::

    Question: What is the product of 6 and 7?
    A) 42
    B) 36
    C) 48
    D) 49
    Answer: A
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field, replace
from typing import Protocol

from infuser.answers.choice import extract_choice

LETTERS = string.ascii_uppercase[:10]
MAX_QUESTION_CHARS = 4096

_QUESTION = re.compile(r"Question:[ \t]*(\S[^\n]{0,1000})")
_OPTION = re.compile(r"([A-J])\)[ \t]*(\S[^\n]{0,200})")
_ANSWER = re.compile(r"Answer:[ \t]*\(?([A-J])\)?[ \t]*")


class Question(Protocol):
    """What the loop needs of a question, whatever its task (:mod:`infuser.tasks`): a
    multiple-choice :class:`MCQuestion`, a :class:`~infuser.tasks.code_problems.CodeProblem`.

    ``kind`` and ``difficulty`` are optional tags for curriculum reports.
    """

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def difficulty(self) -> str: ...

    @property
    def golden_answer(self) -> str:
        """What :attr:`Graded.answers` holds for a right answer (the golden option's letter, a
        passing run's status): what a majority vote is compared with."""
        ...

    def render(self) -> str:
        """The question as the Solver reads it (it fills ``{question}`` in ``prompts.solver``)."""
        ...

    def record_fields(self) -> dict[str, object]:
        """Its fields in a question record (``questions/iter_*.jsonl``): ``question`` and ``answer``
        at least."""
        ...


@dataclass(frozen=True)
class MCQuestion:
    """A multiple-choice question with its golden option.

    ``kind`` and ``difficulty`` are optional tags (the toy world sets them; SuperGPQA rows carry
    discipline and difficulty) used only for reporting the curriculum.
    """

    question: str
    options: tuple[str, ...]
    answer_index: int
    id: str = ""
    kind: str = ""
    difficulty: str = ""

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= len(LETTERS):
            raise ValueError(f"a question needs 2..{len(LETTERS)} options, got {len(self.options)}")
        if not 0 <= self.answer_index < len(self.options):
            raise ValueError(f"answer_index {self.answer_index} out of range for {len(self.options)} options")

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer_index]

    @property
    def golden_answer(self) -> str:
        """The golden option's letter: what grading an answer that picks it gives."""
        return self.answer_letter

    def record_fields(self) -> dict[str, object]:
        """The question record's fields (``questions/iter_*.jsonl``)."""
        return {"question": self.question, "options": self.options, "answer": self.answer_letter}

    def is_answered_by(self, output: str) -> bool:
        """Whether a model's ``output`` picks the golden option (by letter or by option text).

        Uses the evaluation harness's extraction cascade, so training rewards and reported
        accuracy grade answers the same way. It runs in-process, without the judge's worker
        process and time limit (:mod:`infuser.eval.limits`), on purpose: letter extraction is
        plain string work on the output's bounded tail (``MAX_OUTPUT_CHARS``) with anchored,
        bounded regular expressions (no ``eval``, no sympy), so its cost is linear in a bounded
        input, while a process round trip per rollout would cost more than the extraction itself.
        The property tests check that it returns promptly and never raises on any string.
        """
        return self.choice_in(output) == self.answer_letter

    def choice_in(self, output: str) -> str:
        """The option letter a model's ``output`` picks ("" when it picks none): what a majority
        vote over several answers counts (see :meth:`is_answered_by` for the extraction)."""
        return extract_choice(output, self.options).answer or ""

    def shuffled(self, rng: random.Random) -> MCQuestion:
        """The same question with its options in a random order (the golden index follows)."""
        order = list(range(len(self.options)))
        rng.shuffle(order)
        options = tuple(self.options[i] for i in order)
        return replace(self, options=options, answer_index=order.index(self.answer_index))

    def render(self) -> str:
        """The question and its lettered options, one per line, as the Solver sees them."""
        lines = [f"Question: {self.question}"]
        lines += [f"{LETTERS[i]}) {option}" for i, option in enumerate(self.options)]
        return "\n".join(lines)


@dataclass(frozen=True)
class InvalidQuestion:
    """Generator output that could not be used, with the reason (logged and counted)."""

    reason: str
    text: str = field(repr=False, default="")


def write_question(question: MCQuestion) -> str:
    """What a well-behaved Generator writes for ``question``: the inverse of :func:`parse_question`."""
    return f"{question.render()}\nAnswer: {question.answer_letter}"


def parse_question(text: str, min_options: int = 4) -> MCQuestion | InvalidQuestion:
    """Strictly parse Generator output; never raises on any input string."""
    if len(text) > MAX_QUESTION_CHARS:
        return InvalidQuestion("too_long", text[:200])
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return InvalidQuestion("empty", text)
    match = _QUESTION.fullmatch(lines[0])
    if match is None:
        return InvalidQuestion("no_question_line", text)
    options: list[str] = []
    answer: str | None = None
    for line in lines[1:]:
        option = _OPTION.fullmatch(line)
        if option is not None and answer is None:
            if len(options) == len(LETTERS):
                return InvalidQuestion("too_many_options", text)
            if option.group(1) != LETTERS[len(options)]:
                return InvalidQuestion("option_letters_out_of_order", text)
            options.append(option.group(2).strip())
            continue
        answer_match = _ANSWER.fullmatch(line)
        if answer_match is not None and answer is None:
            answer = answer_match.group(1)
            continue
        return InvalidQuestion("unexpected_line", text)
    if len(options) < min_options:
        return InvalidQuestion("too_few_options", text)
    if len(set(options)) != len(options):
        return InvalidQuestion("duplicate_options", text)
    if answer is None:
        return InvalidQuestion("no_answer", text)
    if LETTERS.index(answer) >= len(options):
        return InvalidQuestion("answer_not_an_option", text)
    return MCQuestion(question=match.group(1).strip(), options=tuple(options), answer_index=LETTERS.index(answer))
