"""The pieces of an exact resume: random states that survive a tensors-only load, and checkpoints
that are committed atomically and verified by digest (the end-to-end kill-and-resume runs are in
``tests/fault_injection``)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from infuser.artifacts import RunDirectory
from infuser.checkpointing import random_states, set_random_states


def _draws() -> tuple:
    cuda = torch.rand(3, device="cuda").tolist() if torch.cuda.is_available() else []
    return random.random(), float(np.random.standard_normal()), torch.rand(3).tolist(), cuda


def test_random_states_survive_a_weights_only_load(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    torch.save(random_states(), tmp_path / "rng.pt")
    expected = _draws()
    _draws()  # move every generator on
    set_random_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected


def _write_partial(run: RunDirectory, iteration: int, content: bytes) -> None:
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    run.partial_checkpoint_path(iteration).write_bytes(content)


def test_checkpoints_commit_atomically_and_prune_with_their_digests(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    for iteration in (1, 2, 3):
        _write_partial(run, iteration, f"checkpoint {iteration}".encode())
        assert run.completed_checkpoints() == [run.checkpoint_path(i) for i in range(1, iteration)]
        run.commit_checkpoint(iteration)
    _write_partial(run, 4, b"half a chec")  # a write that never finished
    assert [p.name for p in run.completed_checkpoints()] == ["iter_00001.ckpt", "iter_00002.ckpt", "iter_00003.ckpt"]
    run.prune_checkpoints(2)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        ".iter_00004.ckpt.partial", "iter_00002.ckpt", "iter_00002.ckpt.sha256", "iter_00003.ckpt",
        "iter_00003.ckpt.sha256"]
    assert run.discard_partial_checkpoints() == [run.partial_checkpoint_path(4)]
    assert all(run.verify_checkpoint(path) is None for path in run.completed_checkpoints())


def test_verification_names_what_is_wrong(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    _write_partial(run, 1, bytes(range(256)) * 64)
    path = run.commit_checkpoint(1)
    content = bytearray(path.read_bytes())
    content[1000] ^= 1
    path.write_bytes(content)
    assert "is corrupt" in run.verify_checkpoint(path)
    run.digest_path(path).unlink()
    assert run.verify_checkpoint(path) is None  # no digest: unverifiable, left to the loader
    assert run.verify_checkpoint(run.checkpoint_path(7)) == "does not exist"


def test_sharded_checkpoint_folders_commit_and_verify(tmp_path: Path) -> None:
    """Distributed strategies may save a folder of shards; it is committed and verified as a whole."""
    run = RunDirectory(tmp_path)
    for attempt in (b"first", b"second"):  # the second replaces the first (an iteration run again)
        shards = run.partial_checkpoint_path(1)
        (shards / "rank0").mkdir(parents=True)
        (shards / "rank0" / "shard.distcp").write_bytes(attempt)
        (shards / "meta.json").write_text("{}")
        final = run.commit_checkpoint(1)
    assert (final / "rank0" / "shard.distcp").read_bytes() == b"second"
    assert run.verify_checkpoint(final) is None
    (final / "meta.json").write_text("{ }")
    assert "is corrupt" in run.verify_checkpoint(final)
