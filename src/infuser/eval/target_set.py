"""The influence target set: a seeded SuperGPQA subset for ``fit``, excluded from later ``eval``.

``fit`` measures how much a Generator question helps the Solver on a *target set*. Evaluating the
Solver on the same questions afterwards would report a number the training optimised directly, so
the builder writes, next to the JSONL questions, a manifest (``<name>.manifest.json``) with the
seed, filters, source revision and ids; :func:`load_exclusion` reads either file back, and
``infuser eval`` drops those ids from SuperGPQA and records the exclusion in ``results.json``.

Selection is reproducible: the candidates (after filters) are sorted by id and sampled with
``random.Random(seed)``, so the same seed and source give the same subset whatever the row order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infuser.artifacts import atomic_path, write_jsonl
from infuser.eval.data import LoadedDataset, SuperGPQARow, load_supergpqa
from infuser.eval.sources import DatasetError, read_records, sha256_file

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class TargetSetManifest:
    """What was selected and from where (written as ``<output>.manifest.json``)."""

    path: str
    sha256: str
    ids: tuple[str, ...]
    seed: int
    n_requested: int
    discipline: str | None
    field: str | None
    difficulty: str | None
    candidates: int
    source: dict[str, Any]
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "infuser.target_set",
            "path": self.path,
            "sha256": self.sha256,
            "seed": self.seed,
            "n_requested": self.n_requested,
            "n_selected": len(self.ids),
            "filters": {"discipline": self.discipline, "field": self.field, "difficulty": self.difficulty},
            "candidates": self.candidates,
            "source": self.source,
            "created": self.created,
            "ids": list(self.ids),
        }


def manifest_path(target_set: str | Path) -> Path:
    """``questions.jsonl`` -> ``questions.manifest.json``."""
    path = Path(target_set)
    return path.with_name(path.stem + MANIFEST_SUFFIX) if path.suffix else Path(str(path) + MANIFEST_SUFFIX)


def select_target_rows(
    rows: Sequence[SuperGPQARow],
    n: int,
    seed: int,
    discipline: str | None = "Science",
    field: str | None = None,
    difficulty: str | None = None,
) -> tuple[list[SuperGPQARow], int]:
    """Seeded sample of ``n`` rows matching the filters (all of them when fewer match).

    Returns:
        The selected rows (sorted by id) and the number of candidates.

    Raises:
        ValueError: ``n`` < 1 or nothing matches.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    candidates = sorted(
        (
            r for r in rows
            if (discipline is None or r.discipline == discipline)
            and (field is None or r.field == field)
            and (difficulty is None or r.difficulty == difficulty)
        ),
        key=lambda r: r.id,
    )
    if not candidates:
        raise ValueError(f"no rows match discipline={discipline!r} field={field!r} difficulty={difficulty!r}")
    chosen = candidates if n >= len(candidates) else random.Random(seed).sample(candidates, n)
    return sorted(chosen, key=lambda r: r.id), len(candidates)


def write_target_set(
    dataset: LoadedDataset[SuperGPQARow],
    output: str | Path,
    n: int = 800,
    seed: int = 0,
    discipline: str | None = "Science",
    field: str | None = None,
    difficulty: str | None = None,
) -> TargetSetManifest:
    """Select the subset, write it as SuperGPQA-shaped JSONL, and write its manifest (each
    atomically: :func:`infuser.artifacts.write_jsonl`, :func:`infuser.artifacts.atomic_path`)."""
    rows, candidates = select_target_rows(dataset.rows, n, seed, discipline, field, difficulty)
    out = Path(output)
    write_jsonl(out, [row.to_json() for row in rows])
    manifest = TargetSetManifest(
        path=str(out),
        sha256=sha256_file(out),
        ids=tuple(r.id for r in rows),
        seed=seed,
        n_requested=n,
        discipline=discipline,
        field=field,
        difficulty=difficulty,
        candidates=candidates,
        source=dataset.provenance.to_json(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with atomic_path(manifest_path(out)) as temporary:
        temporary.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def build_target_set(
    output: str,
    path: str | None = None,
    revision: str | None = None,
    n: int = 800,
    seed: int = 0,
    discipline: str | None = "Science",
    field: str | None = None,
    difficulty: str | None = None,
) -> TargetSetManifest:
    """Build the influence target set from SuperGPQA (a local file, or the Hub at ``revision``).

    A plain function with typed parameters so that a CLI (``jsonargparse``) can expose it, e.g.
    ``infuser eval-target-set --output runs/target/science_800.jsonl --n 800 --seed 0``.
    """
    dataset = load_supergpqa(path, revision=revision)
    return write_target_set(dataset, output, n=n, seed=seed, discipline=discipline, field=field, difficulty=difficulty)


@dataclass(frozen=True)
class Exclusion:
    """Ids to leave out of evaluation, and where they came from (recorded in results)."""

    path: str
    sha256: str
    ids: frozenset[str]
    seed: int | None = None

    def to_json(self, removed: int) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "ids": len(self.ids), "removed": removed, "seed": self.seed}


def load_exclusion(path: str | Path) -> Exclusion:
    """Read the ids of a target set from its manifest or from the JSONL itself.

    Raises:
        DatasetError: the file is missing or holds no ids.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{file}: no such target-set file")
    if file.name.endswith(MANIFEST_SUFFIX):
        data = json.loads(file.read_text(encoding="utf-8"))
        ids = data.get("ids")
        if not isinstance(ids, list) or not ids:
            raise DatasetError(f"{file}: manifest has no 'ids' list")
        return Exclusion(str(file), sha256_file(file), frozenset(str(i) for i in ids), data.get("seed"))
    found: set[str] = set()
    for record in read_records(file):
        value = record.value
        if isinstance(value, Exception):
            raise value
        key = value.get("uuid", value.get("id")) if isinstance(value, dict) else None
        if key is None:
            raise DatasetError(f"{record.source}: {record.unit} {record.row}: field 'uuid': missing")
        found.add(str(key))
    if not found:
        raise DatasetError(f"{file}: no ids")
    seed = None
    manifest = manifest_path(file)
    if manifest.is_file():
        seed = json.loads(manifest.read_text(encoding="utf-8")).get("seed")
    return Exclusion(str(file), sha256_file(file), frozenset(found), seed)

