"""A run's checkpoints: written after every iteration, read back by ``--ckpt_path``.

A checkpoint holds everything the next iteration reads: both roles' weights and optimizers, the
loop state (iteration counter, evaluations, metric history), the document stream's position and
every global random state. The loop's own sampling and shuffling draw from streams seeded by
``(seed, iteration, round)``, so a run resumed from one repeats the original exactly.

Writing is all or nothing: a checkpoint is written under a temporary name, its digest recorded,
then renamed (:class:`~infuser.artifacts.RunDirectory`), so a crash, a kill or a full disk never
leaves a half-written file under a checkpoint's name. Reading verifies the digest and loads with
``weights_only=True`` (tensors and plain values, never arbitrary pickled objects).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.strategies import ModelParallelStrategy

from infuser.artifacts import CheckpointError, RunDirectory
from infuser.loop import InfuserLoop, hold_point
from infuser.sharding import load_full_checkpoint, save_full_checkpoint

log = logging.getLogger(__name__)


def random_states() -> dict:
    """Every global random state, as tensors and plain values (loadable with ``weights_only``)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(),
                                           "pos": numpy_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_random_states(states: dict) -> None:
    """Restore what :func:`random_states` captured; CUDA's only on as many visible devices."""
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    np.random.set_state({**numpy_state, "state": {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                                                  "pos": numpy_state["state"]["pos"]}})
    torch.set_rng_state(states["torch"])
    cuda = states["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda:
        log.warning("the checkpoint holds random states of %d CUDA devices but %d are visible; "
                    "CUDA random draws will differ from the original run", len(cuda),
                    torch.cuda.device_count() if torch.cuda.is_available() else 0)


class Checkpointer:
    """Saves and restores one run: ``modules`` (both roles and their optimizers) and ``loop``'s state.

    Args:
        fabric: the run's Fabric (its strategy decides how weights are gathered and written).
        run: the run directory whose ``checkpoints/`` this writes.
        modules: ``{"generator", "generator_optimizer", "solver", "solver_optimizer"}``.
        loop: the loop whose state, document position and random states are saved with them.
        keep: checkpoints kept after each save (0: all).
    """

    def __init__(self, fabric: L.Fabric, run: RunDirectory, modules: dict, loop: InfuserLoop, keep: int) -> None:
        self.fabric, self.run, self.modules, self.loop, self.keep = fabric, run, modules, loop, keep

    def save(self, iteration: int) -> None:
        """Write the checkpoint of ``iteration``: under a temporary name, then committed by rename."""
        payload = {**self.modules, **self.loop.state_dict(), "rng": random_states()}
        try:
            self._write(self.run.partial_checkpoint_path(iteration), payload)
            hold_point("checkpoint_write", iteration)
            if self.fabric.global_rank == 0:
                self.run.commit_checkpoint(iteration)
        except Exception as error:  # a full disk, a lost mount...: say what is still good, then stop
            if self.fabric.global_rank == 0:
                self.run.discard_partial_checkpoints()
            previous = self.run.completed_checkpoints()
            kept = (f"{previous[-1]} is intact and --ckpt_path last resumes from it" if previous
                    else "no earlier checkpoint exists")
            raise CheckpointError(f"cannot write checkpoint {self.run.checkpoint_path(iteration)}: "
                                  f"{type(error).__name__}: {error}; {kept}") from error
        self.fabric.barrier()
        if self.fabric.global_rank == 0:
            self.run.prune_checkpoints(self.keep)

    def discard_unfinished(self) -> None:
        """Remove checkpoints whose writing never finished (a run killed while saving)."""
        if self.fabric.global_rank == 0:
            for stale in self.run.discard_partial_checkpoints():
                log.warning("removed %s: a checkpoint whose writing never finished", stale)

    def resume(self, ckpt_path: str) -> None:
        """Load ``ckpt_path``, or for ``last`` the newest checkpoint that verifies and loads.

        A checkpoint is verified against its recorded SHA-256 (rank 0 reads it; the verdict is
        broadcast). With ``last``, a corrupt or unreadable checkpoint is reported by name and the
        previous one is tried.
        """
        run = self.run
        candidates = list(reversed(run.completed_checkpoints())) if ckpt_path == "last" else [Path(ckpt_path)]
        if not candidates:
            log.warning("ckpt_path=last but %s holds no checkpoint; starting from scratch", run.checkpoints)
            return
        problems = []
        for path in candidates:
            problem = run.verify_checkpoint(path) if self.fabric.global_rank == 0 else None
            problem = self.fabric.broadcast(problem)
            if problem is None:
                state = {**self.modules, "loop": None, "documents": None, "rng": None}
                try:
                    remainder = self._read(path, state)
                except Exception as error:  # noqa: BLE001 - any failure to read means: try the previous one
                    problem = f"cannot be loaded ({type(error).__name__}: {' '.join(str(error).split())[:300]})"
                else:
                    self._restore({**state, **(remainder or {})})
                    log.info("resumed from %s after iteration %d", path, self.loop.state.iteration)
                    return
            if ckpt_path != "last":
                raise CheckpointError(f"checkpoint {path} {problem}")
            log.warning("checkpoint %s %s; trying the previous one", path, problem)
            problems.append(f"{path.name} {problem}")
        raise CheckpointError(f"no usable checkpoint in {run.checkpoints}: {'; '.join(problems)}")

    def _restore(self, state: dict) -> None:
        self.loop.load_state_dict(state)
        set_random_states(state["rng"])

    def _write(self, path: Path, payload: dict) -> None:
        """``fabric.save``; under FSDP, :func:`~infuser.sharding.save_full_checkpoint` (Lightning's
        saves one sharded model per checkpoint, infuser has two)."""
        if isinstance(self.fabric.strategy, ModelParallelStrategy):
            save_full_checkpoint(path, payload, self.fabric.global_rank)
        else:
            self.fabric.save(path, payload)

    def _read(self, path: Path, state: dict) -> dict:
        """``fabric.load`` with ``weights_only``, or its counterpart of :meth:`_write` under FSDP;
        fills ``state``'s modules and optimizers, returns the checkpoint's other entries."""
        if isinstance(self.fabric.strategy, ModelParallelStrategy):
            return load_full_checkpoint(path, state)
        return self.fabric.load(path, state, weights_only=True)
