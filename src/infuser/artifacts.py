"""Everything a run writes under ``run_dir``: checkpoints, question logs and the summary.

Writes are atomic (temporary name, then ``os.replace``), so a crash or a full disk never leaves a
file that looks complete but is not; the previous good checkpoint stays loadable.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


class RunDirectory:
    """Paths and writers of one run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.questions = self.root / "questions"

    def checkpoint_path(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:05d}.ckpt"

    def completed_checkpoints(self) -> list[Path]:
        """Checkpoints in iteration order (temporary files excluded)."""
        return sorted(self.checkpoints.glob("iter_*.ckpt")) if self.checkpoints.exists() else []

    def prune_checkpoints(self, keep: int) -> None:
        for old in self.completed_checkpoints()[:-keep] if keep > 0 else []:
            old.unlink(missing_ok=True)

    def write_questions(self, iteration: int, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.questions / f"iter_{iteration:05d}.jsonl", rows)
