"""Document sources: where the Generator's reading material comes from.

A source is an endless, resumable stream of :class:`Document` chunks. File-backed sources read the
whole corpus once, split it into chunks of at most ``chunk_tokens`` tokens of the Generator's
tokenizer (at paragraph, then sentence, then word boundaries), and cycle through the chunks in a
seeded order that is reshuffled every pass. Their position is two integers, so resuming a run
continues the stream exactly where it stopped.

Bad input is never dropped silently: a malformed line, a wrong encoding or an empty document is an
error naming the file and line, unless ``skip_invalid`` is set, in which case it is skipped,
counted in :attr:`ChunkedCorpus.skipped` and reported in one warning per corpus (the counts by
problem and the first places). A missing path is refused when the source is configured, before
any model is loaded; an empty corpus is always an error.
"""

from __future__ import annotations

import logging
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from infuser.data.jsonl import JSONLineError, encodable, load_json_line
from infuser.data.questions import Question
from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """One chunk of text the Generator reads."""

    id: str
    text: str


class CorpusError(ValueError):
    """A corpus file that cannot be read as promised; the message names the file and line."""


class DocumentSource(ABC):
    """An endless stream of documents with a resumable position."""

    def setup(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Called once with the Generator's tokenizer before the first :meth:`take`."""

    def question_kind(self, question: Question) -> str:
        """A label for the kind of a drafted question, for curriculum reports ("" if unknown)."""
        return ""

    def golden_is_correct(self, question: Question) -> bool | None:
        """Whether a drafted question's golden answer is right, when the source can tell (``None``).

        Real corpora cannot; a synthetic world can, and then the loop reports the Generator's
        golden-answer accuracy (``generator/golden_accuracy``): a Generator whose mix improves
        while its answers go wrong teaches the Solver wrong things.
        """
        return None

    @abstractmethod
    def take(self, count: int) -> list[Document]:
        """The next ``count`` documents."""

    @abstractmethod
    def state_dict(self) -> dict[str, int]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, int]) -> None: ...


ScriptedArm = Literal["oracle", "anti_oracle"]


@runtime_checkable
class SyntheticDocuments(Protocol):
    """A document source that generated its documents from facts it knows (the toy worlds), and so
    can check a draft's golden answer and write drafts by rule.

    ``loop.golden_answers: environment_checked`` and ``loop.scripted_drafts`` need one.
    """

    def golden_is_correct(self, question: Question) -> bool | None:
        """Whether ``question``'s golden answer is the recomputed one (``None``: it asks nothing the
        source can recompute)."""
        ...

    def scripted_kinds(self, arm: ScriptedArm) -> tuple[str, ...]:
        """The kinds of fact a scripted Generator of ``arm`` asks about, the first stated one first;
        raises ``ValueError`` saying why when the source's world defines no such arm."""
        ...

    def scripted_draft(self, document: Document, kinds: tuple[str, ...], rng: random.Random) -> str:
        """A draft in the Generator's output format, with a right golden answer, about a fact of
        the first of ``kinds`` that ``document`` states (any of its facts when none)."""
        ...


_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class ChunkedCorpus(DocumentSource):
    """A finite corpus read from files, chunked to a token budget and cycled in seeded order.

    Args:
        path: a file or a folder (see the subclass for which files a folder contributes).
        chunk_tokens: maximum tokens of one chunk (Generator tokenizer).
        seed: seed of the chunk order.
        skip_invalid: skip and count bad lines/documents instead of raising.
    """

    def __init__(self, path: str, chunk_tokens: int = 512, seed: int = 0, skip_invalid: bool = False) -> None:
        self.path = Path(path)
        self.chunk_tokens = chunk_tokens
        self.seed = seed
        self.skip_invalid = skip_invalid
        self.skipped: Counter[str] = Counter()
        self.skipped_at: list[str] = []  # the first few places something was skipped, for the warning
        self.chunks: list[Document] = []
        self.epoch = 0
        self.position = 0
        if chunk_tokens < 8:
            raise ValueError(f"chunk_tokens must be at least 8, got {chunk_tokens}")
        if not self.path.exists():
            raise CorpusError(f"{self.path}: no such file or folder")

    @abstractmethod
    def read(self) -> Iterator[tuple[str, str]]:
        """``(document id, text)`` pairs of the raw corpus."""

    def _bad(self, where: str, problem: str) -> None:
        if not self.skip_invalid:
            raise CorpusError(f"{where}: {problem} (set skip_invalid: true to skip and count such input)")
        self.skipped[problem] += 1
        if len(self.skipped_at) < 5:
            self.skipped_at.append(f"{where} ({problem})")

    def setup(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.skipped.clear()
        self.skipped_at.clear()
        chunks = []
        for doc_id, text in self.read():
            if not text.strip():
                self._bad(doc_id, "empty document")
                continue
            for index, piece in enumerate(_chunk(text, tokenizer, self.chunk_tokens)):
                chunks.append(Document(id=f"{doc_id}#{index}", text=piece))
        if self.skipped:
            counts = ", ".join(f"{count} {problem}" for problem, count in sorted(self.skipped.items()))
            log.warning("%s: skipped %d invalid input(s) (%s); first at %s", self.path, sum(self.skipped.values()),
                        counts, "; ".join(self.skipped_at))
        if not chunks:
            raise CorpusError(f"{self.path}: the corpus holds no usable document")
        self.chunks = chunks

    def _order(self) -> list[int]:
        order = list(range(len(self.chunks)))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def take(self, count: int) -> list[Document]:
        if not self.chunks:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before take()")
        taken = []
        order = self._order()
        while len(taken) < count:
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order()
            taken.append(self.chunks[order[self.position]])
            self.position += 1
        return taken

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def _chunk(text: str, tokenizer: PreTrainedTokenizerBase, budget: int) -> list[str]:
    """Greedy packing of paragraphs (then sentences, then words) into chunks of <= ``budget`` tokens."""

    def size(piece: str) -> int:
        return len(tokenizer(piece, add_special_tokens=False)["input_ids"])

    def split(piece: str) -> list[str]:
        if size(piece) <= budget:
            return [piece]
        for pattern in (_PARAGRAPH, _SENTENCE, re.compile(r"\s+")):
            parts = [p for p in pattern.split(piece) if p.strip()]
            if len(parts) > 1:
                return [s for part in parts for s in split(part)]
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        return [tokenizer.decode(ids[i : i + budget]) for i in range(0, len(ids), budget)]

    chunks: list[str] = []
    current = ""
    for unit in split(text.strip()):
        candidate = f"{current} {unit}".strip() if current else unit
        if current and size(candidate) > budget:
            chunks.append(current)
            current = unit
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


class _RecordCorpus(ChunkedCorpus):
    """A corpus of records (JSON objects, table rows) holding the document in ``text_field``."""

    def __init__(self, path: str, text_field: str = "text", chunk_tokens: int = 512, seed: int = 0,
                 skip_invalid: bool = False) -> None:
        super().__init__(path, chunk_tokens, seed, skip_invalid)
        self.text_field = text_field

    def _text(self, where: str, value: object) -> str | None:
        """``value`` if it is usable document text, else ``None`` (after :meth:`_bad`)."""
        if not isinstance(value, str):
            self._bad(where, f"field {self.text_field!r} missing or not a string")
            return None
        if not encodable(value):
            self._bad(where, "invalid Unicode (a lone surrogate)")
            return None
        return value


class JsonlDocuments(_RecordCorpus):
    """One JSON object per line with the document in ``text_field``."""

    def read(self) -> Iterator[tuple[str, str]]:
        files = sorted(self.path.glob("*.jsonl")) if self.path.is_dir() else [self.path]
        for file in files:
            with open(file, "rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    where = f"{file}:{number}"
                    if not raw.strip():
                        continue
                    try:
                        row = load_json_line(raw, first=number == 1)
                    except UnicodeDecodeError:
                        self._bad(where, "not valid UTF-8")
                        continue
                    except JSONLineError as error:
                        self._bad(where, f"malformed JSON ({error})")
                        continue
                    value = row.get(self.text_field) if isinstance(row, dict) else None
                    text = self._text(where, value)
                    if text is not None:
                        yield where, text


class TextFolderDocuments(ChunkedCorpus):
    """Every ``.txt`` and ``.md`` file below a folder (or one such file) is a document."""

    suffixes = (".txt", ".md")

    def read(self) -> Iterator[tuple[str, str]]:
        files = [self.path] if self.path.is_file() else sorted(
            p for p in self.path.rglob("*") if p.suffix in self.suffixes and p.is_file())
        for file in files:
            try:
                yield str(file), file.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                self._bad(f"{file}:byte {error.start}", "not valid UTF-8")
            except OSError as error:
                self._bad(str(file), f"unreadable ({error.strerror or error})")


class ParquetDocuments(_RecordCorpus):
    """Rows of one or more parquet files with the document in ``text_field`` (needs pyarrow)."""

    def read(self) -> Iterator[tuple[str, str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted(self.path.glob("*.parquet")) if self.path.is_dir() else [self.path]
        for file in files:
            try:
                table = pq.read_table(file)
            except (OSError, pa.ArrowException) as error:
                self._bad(str(file), f"not a readable parquet file ({' '.join(str(error).split())[:200]})")
                continue
            if self.text_field not in table.column_names:
                raise CorpusError(f"{file}: no column {self.text_field!r}; columns: {', '.join(table.column_names)}")
            for number, value in enumerate(table.column(self.text_field).to_pylist(), start=1):
                text = self._text(f"{file}:row {number}", value)
                if text is not None:
                    yield f"{file}:row {number}", text
