"""The toy world: arithmetic facts hidden in short, unstructured documents.

A document mentions a few facts ("6 times 7 is 42") among filler sentences. The Generator can turn
any fact into a question of one of three kinds (sum, difference, product); the Solver must answer it
without the document. The base model is pretrained (see :mod:`infuser.toy.base_model`) to be good
at sums and differences and poor at products, and documents mention products rarely, while the
target distribution is weighted toward products. A Generator that learns to ask what helps the
Solver on the target set must therefore shift its mix toward product questions: the adaptive
curriculum INFUSER is about, small enough to watch on a laptop CPU.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from infuser.data.questions import MCQuestion

KINDS = ("sum", "difference", "product")
_OPERATOR = {"sum": "plus", "difference": "minus", "product": "times"}
_KIND = re.compile(r"\b(sum|difference|product) of\b")
_FACT_QUESTION = re.compile(r"\bthe (sum|difference|product) of (\d{1,3}) and (\d{1,3})\?")
_FILLERS = (
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
    """One arithmetic relation stated in a document."""

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

    def sentence(self) -> str:
        return f"{self.left} {_OPERATOR[self.kind]} {self.right} is {self.value}."

    def question_text(self) -> str:
        return f"What is the {self.kind} of {self.left} and {self.right}?"


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
            weights = getattr(self, name)
            unknown = set(weights) - set(KINDS)
            if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
                raise ValueError(f"{name}: expected non-negative weights over {KINDS}, got {weights}")


class ToyWorld:
    """Deterministic sampler of facts, documents and questions for one :class:`ToyWorldConfig`."""

    def __init__(self, config: ToyWorldConfig | None = None) -> None:
        self.config = config or ToyWorldConfig()

    def _kind(self, rng: random.Random, weights: dict[str, float]) -> str:
        kinds = list(weights)
        return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]

    def fact(self, rng: random.Random, kind: str) -> Fact:
        left, right = rng.randint(0, self.config.max_operand), rng.randint(0, self.config.max_operand)
        if kind == "difference" and left < right:
            left, right = right, left
        return Fact(kind, left, right)

    def document(self, rng: random.Random, required_kinds: tuple[str, ...] = ()) -> tuple[str, list[Fact]]:
        """A document's text and the facts it states.

        ``required_kinds`` are each stated once; the remaining facts follow
        ``document_kind_weights``.
        """
        kinds = list(required_kinds)[: self.config.facts_per_document]
        kinds += [self._kind(rng, self.config.document_kind_weights)
                  for _ in range(self.config.facts_per_document - len(kinds))]
        facts = [self.fact(rng, kind) for kind in kinds]
        sentences = [f.sentence() for f in facts] + rng.sample(_FILLERS, k=2)
        rng.shuffle(sentences)
        return " ".join(sentences), facts

    def question(self, fact: Fact, rng: random.Random, id: str = "", shuffle: bool = True) -> MCQuestion:
        """A question about ``fact`` whose options are a run of consecutive numbers holding the answer.

        The run starts at a random offset below the answer, so the answer's rank among the
        options is uniform and no "pick the smallest" shortcut exists. With ``shuffle=False``
        the options stay in ascending order (how the toy base learns to write them).
        """
        answer = fact.value
        start = max(answer - rng.randint(0, self.config.num_options - 1), 0)
        options = tuple(str(start + i) for i in range(self.config.num_options))
        question = MCQuestion(question=fact.question_text(), options=options, answer_index=answer - start, id=id,
                              kind=fact.kind, difficulty=fact.difficulty)
        return question.shuffled(rng) if shuffle else question

    @staticmethod
    def kind_of(question_text: str) -> str:
        """The kind a question asks about, read from its wording ("" when it fits none)."""
        match = _KIND.search(question_text)
        return match.group(1) if match else ""

    @staticmethod
    def fact_of(question_text: str) -> Fact | None:
        """The fact a question worded as the toy world words them asks about (``None`` otherwise)."""
        match = _FACT_QUESTION.search(question_text)
        if match is None:
            return None
        return Fact(match.group(1), int(match.group(2)), int(match.group(3)))

    @staticmethod
    def true_answer(question_text: str) -> int | None:
        """The right value of a question worded as the toy world words them (``None`` otherwise).

        A drafted question may ask about any numbers, not only the document's; its golden answer
        is right when it equals this value, whatever the document said.
        """
        fact = ToyWorld.fact_of(question_text)
        return None if fact is None else fact.value

    def question_set(self, split: str, size: int, seed: int) -> list[MCQuestion]:
        """``size`` questions from the target distribution; splits never share a random stream."""
        rng = random.Random(f"{seed}:{split}")
        return [
            self.question(self.fact(rng, self._kind(rng, self.config.target_kind_weights)), rng, id=f"{split}-{i}")
            for i in range(size)
        ]
