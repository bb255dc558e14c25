"""Prompt templates of the two roles.

Templates are plain ``str.format`` strings held in configuration so that users can adapt them
to their base model. The defaults suit base (non-chat) models: they end exactly where the model
should start writing.
"""

from __future__ import annotations

from dataclasses import dataclass

from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from infuser.data.questions import Question


DEFAULT_GENERATOR_TEMPLATE = "Document: {document}\nWrite a question about the document.\n"
DEFAULT_SOLVER_TEMPLATE = "{question}\nPut the correct option in \\boxed{{}}.\nAnswer:"


@dataclass
class PromptTemplates:
    """The prompt each role sees.

    Attributes:
        generator: formatted with ``document`` (the chunk's text).
        solver: formatted with ``question`` (the question as its task renders it, e.g. the
            lettered options of :meth:`~infuser.data.questions.MCQuestion.render`).
    """

    generator: str = DEFAULT_GENERATOR_TEMPLATE
    solver: str = DEFAULT_SOLVER_TEMPLATE

    def __post_init__(self) -> None:
        for name, template, key in (("generator", self.generator, "document"), ("solver", self.solver, "question")):
            try:
                template.format(**{key: "x"})
            except (KeyError, IndexError, ValueError) as error:
                raise ValueError(f"prompts.{name}: the template must use only the field {{{key}}} ({error})") from None

    def for_generator(self, document: str) -> str:
        return self.generator.format(document=document)

    def for_solver(self, question: Question) -> str:
        return self.solver.format(question=question.render())
