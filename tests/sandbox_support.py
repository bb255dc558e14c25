"""Shared by the sandbox tests: an executor per isolation level this machine has, and the checks
that nothing of an execution outlives it (no process, no temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infuser.sandbox.local import LocalExecutor

QUICK = {"timeout_s": 2.0, "memory_mb": 256, "file_size_mb": 1, "max_output_bytes": 1 << 16, "max_workers": 2}
"""Small limits: hostile programs hit them within seconds."""


def executor_at(level: str, tmp_dir: Path, **options: object) -> LocalExecutor:
    """An executor at ``level``; the test is skipped, naming the level, where it does not work."""
    try:
        return LocalExecutor(isolation=level, tmp_dir=str(tmp_dir), **{**QUICK, **options})  # type: ignore[arg-type]
    except RuntimeError as error:
        pytest.skip(f"isolation level {level} does not work on this machine: {error}")


def processes_with(marker: str) -> list[str]:
    """Command lines of the live processes that carry ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def assert_nothing_left(executor: LocalExecutor, tmp_dir: Path, marker: str | None = None) -> None:
    """None of ``executor``'s sandboxed processes (its ``label`` ends their command lines) and no
    process carrying ``marker`` is alive, and no working directory is left in ``tmp_dir`` (the
    ``unshare`` level's mount point, which stays empty, excepted). Only this executor's: another
    test session on the machine may be running sandboxed programs of its own."""
    assert processes_with(executor.label) == []
    if marker is not None:
        assert processes_with(marker) == []
    left = sorted(os.listdir(tmp_dir))
    mount_point = os.path.basename(executor._root) if executor._root else None
    assert [name for name in left if name != mount_point] == [], (left, mount_point)
    if mount_point:
        assert os.listdir(executor._root) == []
