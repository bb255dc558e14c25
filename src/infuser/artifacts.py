"""Everything a run writes under ``run_dir``: checkpoints, question logs and the summary.

Writes are atomic (temporary name, then ``os.replace``), so a crash or a full disk never leaves a
file that looks complete but is not; the previous good checkpoint stays loadable.

A checkpoint is committed in three steps: it is written under a hidden temporary name, its SHA-256
is written beside it (``iter_NNNNN.ckpt.sha256``), and only then is it renamed into place. The
digest is what "verified on load" means: torch's zip format detects truncation but not a flipped
byte inside a tensor, and a checkpoint that loads with silently wrong weights is worse than one
that fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or no usable checkpoint to resume from; names the file."""


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


def respect_umask(folder: Path) -> None:
    """Give every file below ``folder`` the permissions a file created by ``open`` gets (``0o666``
    less the umask).

    safetensors writes ``model.safetensors`` readable by its owner only (``0o600``), so an exported
    model in a shared run folder could not be read by the group that reads everything else in it.
    The umask can only be read by setting it; it is restored at once.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


# Characters ``str.splitlines`` breaks lines at that ``json.dumps(ensure_ascii=False)`` leaves raw.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, non-ASCII text kept readable.

    Model output can hold any character. Unicode line separators are written escaped, so every
    reader (``splitlines`` included) sees one row per line; a lone surrogate (a file name with
    undecodable bytes becomes one) is written as its ``\\udXXX`` escape instead of failing the
    write. Both escapes are still valid JSON for the same string.
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", errors="backslashreplace") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")


def tree_digest(path: Path, sync: bool = False) -> str:
    """SHA-256 of a file, or of every file below a folder (sharded checkpoints) in path order.

    With ``sync`` every file is also flushed to disk (``fsync``) while it is read, so a power cut
    after the rename cannot leave a renamed checkpoint whose bytes never reached the disk.
    """
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:  # a folder: the layout counts too
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
            if sync:
                os.fsync(handle.fileno())
    return digest.hexdigest()


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class RunDirectory:
    """Paths and writers of one run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.questions = self.root / "questions"

    def checkpoint_path(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:05d}.ckpt"

    def partial_checkpoint_path(self, iteration: int) -> Path:
        """Where a checkpoint is written before it is committed (hidden: never taken for a checkpoint)."""
        return self.checkpoints / f".iter_{iteration:05d}.ckpt.partial"

    @staticmethod
    def digest_path(checkpoint: Path) -> Path:
        return checkpoint.with_name(f"{checkpoint.name}.sha256")

    def completed_checkpoints(self) -> list[Path]:
        """Checkpoints in iteration order (temporary files excluded)."""
        return sorted(self.checkpoints.glob("iter_*.ckpt")) if self.checkpoints.exists() else []

    def commit_checkpoint(self, iteration: int) -> Path:
        """Flush the written partial checkpoint, record its digest, and rename it into place."""
        partial, final = self.partial_checkpoint_path(iteration), self.checkpoint_path(iteration)
        digest = tree_digest(partial, sync=True)
        with atomic_path(self.digest_path(final)) as temporary:
            temporary.write_text(digest + "\n")
        if final.is_dir():
            shutil.rmtree(final)  # a sharded checkpoint of the same iteration from an earlier attempt
        os.replace(partial, final)
        _sync_folder(self.checkpoints)
        return final

    def discard_partial_checkpoints(self) -> list[Path]:
        """Remove checkpoints whose writing never finished; returns what was removed."""
        stale = sorted(self.checkpoints.glob(".iter_*.ckpt.partial")) if self.checkpoints.exists() else []
        for path in stale:
            _remove(path)
        return stale

    def verify_checkpoint(self, checkpoint: Path) -> str | None:
        """``None`` when ``checkpoint`` matches its recorded digest, else what is wrong with it.

        A checkpoint without a digest file (written elsewhere, or copied without it) cannot be
        verified; that is reported as a problem only when the checkpoint itself is missing.
        """
        if not checkpoint.exists():
            return "does not exist"
        recorded = self.digest_path(checkpoint)
        if not recorded.is_file():
            return None
        expected = recorded.read_text().strip()
        actual = tree_digest(checkpoint)
        if actual != expected:
            return f"is corrupt: its SHA-256 {actual[:12]}... differs from the recorded {expected[:12]}..."
        return None

    def prune_checkpoints(self, keep: int) -> None:
        """Keep the newest ``keep`` checkpoints (0: keep all) with their digests."""
        for old in self.completed_checkpoints()[:-keep] if keep > 0 else []:
            _remove(old)
            self.digest_path(old).unlink(missing_ok=True)

    def write_questions(self, iteration: int, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.questions / f"iter_{iteration:05d}.jsonl", rows)

    def write_samples(self, iteration: int, rows: list[dict[str, Any]]) -> None:
        """A few completions per update (prompt, completion, advantage), for reading what the roles write."""
        write_jsonl(self.root / "samples" / f"iter_{iteration:05d}.jsonl", rows)
