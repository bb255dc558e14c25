"""The toy worlds as the loop's components: a document source and a question source per world.

They implement the generic interfaces of :mod:`infuser.data` (:class:`DocumentSource`,
:class:`QuestionSource`) on a world (:class:`~infuser.toy.world.ArithmeticWorld`), and the
interfaces only a synthetic world can: recomputed golden answers and scripted drafts
(:class:`~infuser.data.documents.SyntheticDocuments`), canonical Solver answers for exact
evaluation (:class:`~infuser.data.question_sets.CanonicalAnswers`). A world's sources are these
classes with its :attr:`world_class` (see :mod:`infuser.toy.rules`). Registered as ``toy``
(documents and questions).
"""

from __future__ import annotations

import random

from infuser.data.documents import Document, DocumentSource, ScriptedArm
from infuser.data.question_sets import QuestionSource
from infuser.data.questions import MCQuestion
from infuser.toy.world import ArithmeticWorld, ToyWorld, ToyWorldConfig


class ToyDocuments(DocumentSource):
    """The toy world's documents: deterministic in ``seed`` and the position in the stream.

    Args:
        seed: seed of the document stream.
        world: the world's shape (kind mix of facts, operands...).
        required_kinds: kinds stated once in every document (the rest follow the world's
            kind mix), so that a Generator that wants to ask about them always can, with a
            correct golden answer copied from the text.
    """

    world_class: type[ArithmeticWorld] = ToyWorld

    def __init__(self, seed: int = 0, world: ToyWorldConfig | None = None, required_kinds: list[str] | None = None
                 ) -> None:
        self.seed = seed
        self.world = self.world_class(world)
        self.required_kinds = tuple(required_kinds or ())
        unknown = set(self.required_kinds) - set(self.world.kinds)
        if unknown:
            raise ValueError(f"documents.required_kinds: unknown kinds {sorted(unknown)}; expected some of "
                             f"{self.world.kinds}")
        self.position = 0

    def question_kind(self, question: MCQuestion) -> str:
        return self.world.kind_asked(question.question)

    def golden_is_correct(self, question: MCQuestion) -> bool | None:
        return self.world.golden_is_correct(question)

    def scripted_kinds(self, arm: ScriptedArm) -> tuple[str, ...]:
        kinds = self.world.scripted_kinds.get(arm)
        if kinds is None:
            defined = ", ".join(self.world.scripted_kinds) or "none"
            raise ValueError(f"loop.scripted_drafts: the {self.world.name} world defines no {arm} arm (it defines: "
                             f"{defined}); see {type(self.world).__name__}'s docstring")
        return kinds

    def scripted_draft(self, document: Document, kinds: tuple[str, ...], rng: random.Random) -> str:
        """See :meth:`ArithmeticWorld.scripted_draft`."""
        return self.world.scripted_draft(document.text, kinds, rng)

    def take(self, count: int) -> list[Document]:
        documents = []
        for index in range(self.position, self.position + count):
            text, _ = self.world.document(random.Random(f"{self.seed}:document:{index}"), self.required_kinds)
            documents.append(Document(id=f"{self.world.name}-{index}", text=text))
        self.position += count
        return documents

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


class ToyQuestions(QuestionSource):
    """Questions from the toy world's target distribution.

    ``split`` seeds an independent stream, so ``target`` and ``heldout`` never share draws.
    """

    world_class: type[ArithmeticWorld] = ToyWorld

    def __init__(self, split: str = "target", size: int = 64, seed: int = 0,
                 world: ToyWorldConfig | None = None) -> None:
        self.split, self.size, self.seed = split, size, seed
        self.world = self.world_class(world)

    def load(self) -> list[MCQuestion]:
        return self.world.question_set(self.split, self.size, self.seed)

    def canonical_completion(self, question: MCQuestion) -> str:
        return self.world.canonical_completion(question)
