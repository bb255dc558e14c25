"""Where benchmark rows come from: local files (``.jsonl``, ``.json``, ``.parquet``, or a folder of
one file per subset) and the Hugging Face Hub, read as raw records that say where each came from.

A record is not validated here (that is :mod:`infuser.eval.data`'s schema); a JSONL line that is
not JSON is handed on as a :class:`RowError` value, for the loader to raise or count.

Hub loading imports ``datasets`` lazily and always loads at a pinned revision: an unpinned load
first resolves ``main`` to its commit (:func:`resolve_hub_revision`), so that the commit actually
used is what gets recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuser.data.jsonl import JSONLineError, load_json_line

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")  # and ``.jsonl.gz`` for a single file


class DatasetError(ValueError):
    """A dataset could not be read at all (missing file, unknown format, no rows)."""


class RowError(ValueError):
    """One row breaks the benchmark's schema, or is not readable at all (a line that is not JSON).

    Attributes:
        source: the file path or ``hub-id@revision:subset``.
        row: 1-based line number (JSONL) or row index (JSON array, parquet, Hub split).
        field: the offending field, or ``None`` when the row as a whole is unusable.
        problem: what is wrong.
    """

    def __init__(self, source: str, row: int, field: str | None, problem: str, unit: str = "row") -> None:
        self.source = source
        self.row = row
        self.field = field
        self.problem = problem
        where = f"{source}: {unit} {row}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class RawRecord:
    """One record as read, with where it came from (for error messages)."""

    source: str
    row: int
    unit: str  # "line" or "row"
    value: Any


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded in results so a local dataset is identified exactly)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: str | Path) -> Iterator[RawRecord]:
    """Records of a local ``.jsonl`` (or ``.jsonl.gz``), ``.json`` (array, or object with a
    ``data``/``rows`` list) or ``.parquet`` file. Blank JSONL lines are skipped; a line that is not JSON is yielded as a
    :class:`RowError` value for the caller to raise or count.

    Raises:
        DatasetError: the file is missing, of unknown type, or not parseable as a whole.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DatasetError(f"{source}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or path.name.lower().endswith(".jsonl.gz"):
        opened = gzip.open(path, "rb") if suffix == ".gz" else open(path, "rb")
        with opened as handle:
            for number, line in enumerate(_lines(handle, source), start=1):
                if not line.strip():
                    continue
                try:
                    value = load_json_line(line, first=number == 1)
                except UnicodeDecodeError:
                    value = RowError(source, number, None, "not valid UTF-8", "line")
                except JSONLineError as exc:
                    value = RowError(source, number, None, f"not valid JSON ({exc})", "line")
                yield RawRecord(source, number, "line", value)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{source}: not valid UTF-8 (byte {exc.start})") from exc
        except (RecursionError, ValueError) as exc:  # nesting, or an integer past Python's digit limit
            raise DatasetError(f"{source}: not valid JSON ({str(exc).split(':')[0]})") from exc
        if isinstance(data, dict):
            data = next((data[k] for k in ("data", "rows", "examples") if isinstance(data.get(k), list)), None)
        if not isinstance(data, list):
            raise DatasetError(f"{source}: expected a JSON array of rows (or an object with a 'data' list)")
        for number, value in enumerate(data, start=1):
            yield RawRecord(source, number, "row", value)
    elif suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - pyarrow ships with datasets
            raise DatasetError(f"{source}: reading parquet needs pyarrow (pip install pyarrow)") from exc
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{source}: not a readable parquet file ({' '.join(str(exc).split())[:200]})") from exc
        for number, value in enumerate(table.to_pylist(), start=1):
            yield RawRecord(source, number, "row", value)
    else:
        raise DatasetError(f"{source}: unknown file type {suffix!r}; expected one of {LOCAL_SUFFIXES}")


def _lines(handle: Any, source: str) -> Iterator[bytes]:
    """The lines of a (possibly gzip-compressed) file; a corrupt archive is a :class:`DatasetError`."""
    try:
        yield from handle
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{source}: not a readable gzip file ({exc})") from exc


def local_files(path: Path, subsets: Sequence[str] | None) -> list[tuple[Path, str]]:
    """Files to read for a local source, each with its subset name: the file itself, or a folder's
    ``<subset>.jsonl|.json|.parquet`` per subset (every file of a known type when ``subsets`` is empty)."""
    if path.is_file():
        return [(path, path.stem)]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or directory")
    found: list[tuple[Path, str]] = []
    names = list(subsets) if subsets else sorted({p.stem for p in path.iterdir() if p.suffix in LOCAL_SUFFIXES})
    for name in names:
        for suffix in LOCAL_SUFFIXES:
            candidate = path / f"{name}{suffix}"
            if candidate.is_file():
                found.append((candidate, name))
                break
    if not found:
        wanted = ", ".join(names) if names else "any"
        raise DatasetError(f"{path}: no dataset file for subsets {wanted} (looked for {'/'.join(LOCAL_SUFFIXES)})")
    return found


# -- the Hub -----------------------------------------------------------------------------------------


def resolve_hub_revision(hf_id: str) -> str:
    """The commit that ``main`` of a Hub dataset points to now (needs network).

    Raises:
        DatasetError: ``huggingface_hub`` is missing or the Hub cannot be reached.
    """
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:  # pragma: no cover - a dependency of transformers
        raise DatasetError("resolving a Hub revision needs huggingface_hub") from exc
    try:
        sha = HfApi().dataset_info(hf_id, revision="main").sha
    except Exception as exc:  # network errors come in many types
        raise DatasetError(
            f"{hf_id}: cannot resolve the 'main' revision ({type(exc).__name__}: {exc}); "
            "pass an explicit revision or a local path"
        ) from exc
    if not sha:
        raise DatasetError(f"{hf_id}: the Hub returned no commit for 'main'; pass an explicit revision")
    return str(sha)


def hub_records(hf_id: str, revision: str, split: str, subset: str | None) -> Iterator[RawRecord]:
    """Rows of one Hub split at a pinned revision, via ``datasets.load_dataset`` (imported here)."""
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError("loading from the Hub needs the 'datasets' package (pip install datasets)") from exc
    source = f"{hf_id}@{revision[:12]}" + (f":{subset}" if subset else "")
    try:
        table = datasets.load_dataset(hf_id, name=subset, split=split, revision=revision)
    except Exception as exc:
        raise DatasetError(f"{source}: could not load split {split!r} ({type(exc).__name__}: {exc})") from exc
    for number, value in enumerate(table, start=1):
        yield RawRecord(source, number, "row", value)
