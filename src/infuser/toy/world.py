"""The toy worlds' common ground, and the aligned toy world: arithmetic facts hidden in short documents.

A document mentions a few facts ("6 times 7 is 42") among filler sentences. The Generator can turn
any fact into a multiple-choice question ("What is the product of 6 and 7?"); the Solver must
answer it without the document, writing a short worked answer that ends in ``\\boxed{...}``.
:class:`ArithmeticWorld` holds what every toy world shares: the wording of facts and questions,
reading facts back from a document or a question (so golden answers can be recomputed and
scripted drafts written), and the Solver's canonical answers. A world decides its kinds of fact,
how documents and question sets draw them, and how its Solver works an answer out.

:class:`ToyWorld` is the *aligned* world: the base model (see :mod:`infuser.toy.base_model`) is
good at sums and differences and poor at products, documents mention products rarely, and the
target distribution is weighted toward products, so the kind the base is weak at is the target's
main kind. Its skill is a lookup table of 100 products; the rule world (:mod:`infuser.toy.rules`)
is the counterpart whose target skill is a rule.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from infuser.data.questions import MCQuestion, write_question

KINDS = ("sum", "difference", "product")
_OPERATOR = {"sum": "plus", "difference": "minus", "product": "times"}
_OPERATION = {word: operation for operation, word in _OPERATOR.items()}
_KIND = re.compile(r"\b(sum|difference|product) of\b")
_FACT_QUESTION = re.compile(r"\bthe (sum|difference|product) of (\d{1,3}) and (\d{1,3})\?")
_FACT_SENTENCE = re.compile(r"\b(\d{1,3}) (plus|minus|times) (\d{1,3}) is -?\d{1,6}\.")
FILLERS = (
    "The clerk wrote it down.",
    "Nobody checked the ledger twice.",
    "It rained all afternoon.",
    "The market closed early.",
    "A cat slept on the counter.",
    "The notes were kept in a blue box.",
    "Later the lamps were lit.",
    "The teacher read it aloud.",
)


@dataclass(frozen=True)
class Fact:
    """One arithmetic relation: an operation (``kind``: sum, difference or product) on two operands."""

    kind: str
    left: int
    right: int

    @property
    def value(self) -> int:
        if self.kind == "sum":
            return self.left + self.right
        if self.kind == "difference":
            return self.left - self.right
        return self.left * self.right

    @property
    def difficulty(self) -> str:
        return "hard" if max(self.left, self.right) >= 6 else "easy"

    @property
    def operator(self) -> str:
        return _OPERATOR[self.kind]

    def sentence(self) -> str:
        return f"{self.left} {self.operator} {self.right} is {self.value}."

    def question_text(self) -> str:
        return f"What is the {self.kind} of {self.left} and {self.right}?"


def one_line_answer(fact: Fact, believed: int) -> str:
    """A short worked answer: the computed value, then that value boxed.

    Boxing the option's text rather than its letter is a valid multiple-choice answer (the
    grader maps it to the option) and spares the tiny model a lookup it learns slowly.
    """
    return f" {fact.left} {fact.operator} {fact.right} is {believed}, so \\boxed{{{believed}}}"


def facts_in(text: str) -> list[Fact]:
    """The facts a document states, in order ("27 plus 5 is 32." and the like)."""
    return [Fact(_OPERATION[m.group(2)], int(m.group(1)), int(m.group(3))) for m in _FACT_SENTENCE.finditer(text)]


def fact_asked(question_text: str) -> Fact | None:
    """The fact a question worded as the toy worlds word them asks about (``None`` otherwise)."""
    match = _FACT_QUESTION.search(question_text)
    return None if match is None else Fact(match.group(1), int(match.group(2)), int(match.group(3)))


def check_weights(name: str, weights: dict[str, float], kinds: Sequence[str]) -> None:
    """Refuse a kind mix that names an unknown kind or cannot be drawn from."""
    unknown = set(weights) - set(kinds)
    if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"{name}: expected non-negative weights over {tuple(kinds)}, got {weights}")


class WorldShape(Protocol):
    """The part of a world's configuration that the shared sampling code reads."""

    document_kind_weights: dict[str, float]
    target_kind_weights: dict[str, float]
    facts_per_document: int
    num_options: int


class ArithmeticWorld(ABC):
    """What the toy worlds share; a subclass decides its kinds, the range of their facts and how
    the Solver works an answer out.

    Attributes:
        name: prefix of the ids of its documents.
        kinds: the kinds of fact the world draws (its pretraining corpus asks about each alike).
        scripted_kinds: per headroom arm (``oracle``, ``anti_oracle``), the kinds its scripted
            Generator asks about, first stated first (see :meth:`scripted_draft`); an arm the world
            cannot define is missing.
        config: the world's configuration.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    scripted_kinds: ClassVar[dict[str, tuple[str, ...]]]
    config: WorldShape

    @abstractmethod
    def kind(self, fact: Fact) -> str:
        """The world's kind of ``fact`` ("" when it is none of :attr:`kinds`)."""

    @abstractmethod
    def fact(self, rng: random.Random, kind: str, split: str | None = None) -> Fact:
        """A fact of ``kind`` for ``split`` (``documents``, a question set's split name, or ``None``:
        the world's whole range, what the base is pretrained on)."""

    @abstractmethod
    def worked_answer(self, fact: Fact) -> str:
        """The Solver's right answer to a question about ``fact`` (what the base writes when right)."""

    @abstractmethod
    def mistaken_answer(self, fact: Fact, asked: MCQuestion, rng: random.Random) -> str:
        """The Solver's typical wrong answer to ``asked`` (a question about ``fact``), for pretraining."""

    def document(self, rng: random.Random, required_kinds: tuple[str, ...] = ()) -> tuple[str, list[Fact]]:
        """A document's text and the facts it states.

        ``required_kinds`` are each stated once; the remaining facts follow
        ``document_kind_weights``.
        """
        kinds = list(required_kinds)[: self.config.facts_per_document]
        kinds += [self.draw_kind(rng, self.config.document_kind_weights)
                  for _ in range(self.config.facts_per_document - len(kinds))]
        facts = [self.fact(rng, kind, "documents") for kind in kinds]
        sentences = [f.sentence() for f in facts] + rng.sample(FILLERS, k=2)
        rng.shuffle(sentences)
        return " ".join(sentences), facts

    def question_set(self, split: str, size: int, seed: int) -> list[MCQuestion]:
        """``size`` questions from the target distribution; splits never share a random stream."""
        rng = random.Random(f"{seed}:{split}")
        return [
            self.question(self.fact(rng, self.draw_kind(rng, self.config.target_kind_weights), split), rng,
                          id=f"{split}-{i}")
            for i in range(size)
        ]

    def draw_kind(self, rng: random.Random, weights: dict[str, float]) -> str:
        kinds = list(weights)
        return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]

    def question(self, fact: Fact, rng: random.Random, id: str = "", shuffle: bool = True) -> MCQuestion:
        """A question about ``fact`` whose options are a run of consecutive numbers holding the answer.

        The run starts at a random offset below the answer, so the answer's rank among the
        options is uniform and no "pick the smallest" shortcut exists. With ``shuffle=False``
        the options stay in ascending order (how the toy bases learn to write them).
        """
        answer, count = fact.value, self.config.num_options
        start = max(answer - rng.randint(0, count - 1), 0)
        options = tuple(str(start + i) for i in range(count))
        question = MCQuestion(question=fact.question_text(), options=options, answer_index=answer - start, id=id,
                              kind=self.kind(fact), difficulty=fact.difficulty)
        return question.shuffled(rng) if shuffle else question

    def kind_asked(self, question_text: str) -> str:
        """The kind a question asks about, read from its wording ("" when it fits none)."""
        fact = fact_asked(question_text)
        return self.kind(fact) if fact is not None else ""

    @staticmethod
    def true_answer(question_text: str) -> int | None:
        """The right value of a question worded as the toy worlds word them (``None`` otherwise).

        A drafted question may ask about any numbers, not only the document's; its golden answer
        is right when it equals this value, whatever the document said.
        """
        fact = fact_asked(question_text)
        return None if fact is None else fact.value

    def golden_is_correct(self, question: MCQuestion) -> bool | None:
        """Whether the golden option is the recomputed answer (``None``: not worded as the world words)."""
        value = self.true_answer(question.question)
        if value is None:
            return None
        return question.options[question.answer_index].strip() == str(value)

    def canonical_completion(self, question: MCQuestion) -> str:
        """The completion the base is taught to write when it answers ``question`` right.

        Exact evaluation scores the Solver's probability of writing it (see
        :func:`infuser.rollout.scoring.exact_probabilities`).
        """
        fact = fact_asked(question.question)
        if fact is None:
            raise ValueError(f"not a question of the {self.name} world: {question.question!r}")
        return self.worked_answer(fact)

    def scripted_draft(self, document_text: str, kinds: Sequence[str], rng: random.Random) -> str:
        """A well-formed draft, in the Generator's output format, about a fact the document states.

        The fact is of the first kind in ``kinds`` that the document states (drawn uniformly
        among that kind's facts); when the document states none of ``kinds``, any of its facts,
        drawn uniformly. The golden answer is the recomputed value, so it is always right. This
        is the headroom arms' Generator: ``kinds`` = the target rule first (oracle) or the
        distractor first (anti-oracle).
        """
        facts = facts_in(document_text)
        if not facts:
            raise ValueError(f"the document states no fact to draft a question about: {document_text[:200]!r}")
        for kind in kinds:
            candidates = [f for f in facts if self.kind(f) == kind]
            if candidates:
                break
        else:
            candidates = facts
        return write_question(self.question(rng.choice(candidates), rng, shuffle=False))


@dataclass
class ToyWorldConfig:
    """Shape of the toy world.

    Attributes:
        document_kind_weights: how often each kind of fact appears in documents (what the
            documents "suggest").
        target_kind_weights: the kind mix of the target set and of the held-out test set.
        facts_per_document: facts mentioned in one document.
        max_operand: operands are drawn from 0..max_operand.
        num_options: options per question.
    """

    document_kind_weights: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.45, "difference": 0.45, "product": 0.10}
    )
    target_kind_weights: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.15, "difference": 0.15, "product": 0.70}
    )
    facts_per_document: int = 3
    max_operand: int = 9
    num_options: int = 4

    def __post_init__(self) -> None:
        for name in ("document_kind_weights", "target_kind_weights"):
            check_weights(name, getattr(self, name), KINDS)


class ToyWorld(ArithmeticWorld):
    """Deterministic sampler of facts, documents and questions for one :class:`ToyWorldConfig`.

    Its oracle asks about products, the weak kind that is also the target's main kind; it has no
    anti-oracle, since no kind here is a distractor (pass rates near 1/2 *are* the target's kind).
    """

    name = "toy"
    kinds = KINDS
    scripted_kinds = {"oracle": ("product",)}

    def __init__(self, config: ToyWorldConfig | None = None) -> None:
        self.config = config or ToyWorldConfig()

    def kind(self, fact: Fact) -> str:
        return fact.kind

    def fact(self, rng: random.Random, kind: str, split: str | None = None) -> Fact:
        """Operands from 0..max_operand whatever the split: this world's splits share facts."""
        left, right = rng.randint(0, self.config.max_operand), rng.randint(0, self.config.max_operand)
        if kind == "difference" and left < right:
            left, right = right, left
        return Fact(kind, left, right)

    def worked_answer(self, fact: Fact) -> str:
        return one_line_answer(fact, fact.value)

    def mistaken_answer(self, fact: Fact, asked: MCQuestion, rng: random.Random) -> str:
        """Another option's value, worked as if it were right (the base's uninformed guess)."""
        return one_line_answer(fact, int(rng.choice([o for o in asked.options if o != str(fact.value)])))
