"""Question sets: the target set (whose gradient guides the Generator) and the held-out test set.

The file format is SuperGPQA-shaped JSONL (``uuid`` or ``id``, ``question``, ``options``,
``answer_letter``, optional ``discipline``/``difficulty``), which is also what
``infuser eval``'s target-set builder writes.

A row that does not fit is an error naming the file, line and field; with ``skip_invalid`` it is
skipped, counted and reported in one warning.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol, runtime_checkable

from infuser.data.jsonl import JSONLineError, encodable, load_json_line
from infuser.data.questions import LETTERS, MCQuestion, Question

log = logging.getLogger(__name__)


class QuestionSetError(ValueError):
    """A question file row that does not fit the schema; the message names file, line and field."""


class QuestionSource(ABC):
    """A fixed list of questions (of the run's task: multiple-choice, programming problems)."""

    @abstractmethod
    def load(self) -> list[Question]: ...


@runtime_checkable
class CanonicalAnswers(Protocol):
    """A question source that knows, for each of its questions, the completion its Solver is taught
    to write when it is right: the loop then also reports the Solver's exact (teacher-forced)
    probability of writing it (``eval/target_exact``, ``eval/heldout_exact``). Sources without
    one (real benchmarks, whose right answers can be worded many ways) report sampled accuracy only.
    """

    def canonical_completion(self, question: Question) -> str:
        """The canonical Solver completion answering ``question`` (without the end-of-text token)."""
        ...


class JsonlQuestions(QuestionSource):
    """Multiple-choice questions from a JSONL file.

    Args:
        path: the file.
        limit: keep only the first ``limit`` rows (``None``: all).
        skip_invalid: skip and count invalid rows instead of raising.
    """

    def __init__(self, path: str, limit: int | None = None, skip_invalid: bool = False) -> None:
        self.path = Path(path)
        self.limit = limit
        self.skip_invalid = skip_invalid
        self.skipped = 0

    def load(self) -> list[Question]:
        if not self.path.is_file():
            raise QuestionSetError(f"{self.path}: no such file")
        questions: list[Question] = []
        self.skipped, first_skipped = 0, ""
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    questions.append(self.parse_row(raw, number))
                except QuestionSetError as error:
                    if not self.skip_invalid:
                        raise QuestionSetError(f"{self.path}:{error}") from None
                    self.skipped += 1
                    first_skipped = first_skipped or f"{self.path}:{error}"
                if self.limit is not None and len(questions) >= self.limit:
                    break
        if self.skipped:
            log.warning("%s: skipped %d invalid row(s); the first: %s", self.path, self.skipped, first_skipped)
        if not questions:
            raise QuestionSetError(f"{self.path}: no usable question")
        return questions


    def parse_row(self, raw: bytes, number: int) -> Question:
        """Line ``number``'s question; :class:`QuestionSetError` (``"<number>: why"``) when it does not fit."""
        return _row_to_question(json_object(raw, number), number)


def json_object(raw: bytes, number: int) -> dict:
    """Line ``number`` as a JSON object, or a :class:`QuestionSetError` saying why it is not one."""
    try:
        row = load_json_line(raw, first=number == 1)
    except UnicodeDecodeError:
        raise QuestionSetError(f"{number}: not valid UTF-8") from None
    except JSONLineError as error:
        raise QuestionSetError(f"{number}: malformed JSON ({error})") from None
    if not isinstance(row, dict):
        raise QuestionSetError(f"{number}: expected a JSON object")
    return row


def _row_to_question(row: dict, number: int) -> MCQuestion:
    question, options, letter = row.get("question"), row.get("options"), row.get("answer_letter")
    if not is_text(question):
        raise QuestionSetError(f"{number}: field 'question' must be a non-empty string of valid Unicode")
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or \
            not all(is_text(o) for o in options):
        raise QuestionSetError(f"{number}: field 'options' must be a list of 2 to {len(LETTERS)} non-empty strings")
    if len({o.strip() for o in options}) != len(options):
        raise QuestionSetError(f"{number}: field 'options' repeats an option (grading by option text would be "
                               "ambiguous)")
    if not isinstance(letter, str) or letter not in LETTERS[: len(options)]:
        raise QuestionSetError(f"{number}: field 'answer_letter' must be one of {LETTERS[: len(options)]}")
    return MCQuestion(question=question, options=tuple(options), answer_index=LETTERS.index(letter),
                      id=str(row.get("uuid", row.get("id", number))), kind=str(row.get("discipline", "")),
                      difficulty=str(row.get("difficulty", "")))


def is_text(value: object) -> bool:
    """A non-empty string of valid Unicode."""
    return isinstance(value, str) and bool(value.strip()) and encodable(value)
