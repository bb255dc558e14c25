"""``infuser fit``: build the parts from configuration, then run :class:`~infuser.loop.InfuserLoop`.

Lightning 2.x has no loop-customisation API for a Trainer, and calling ``Trainer.fit`` once per
phase is fragile (step counters, callbacks and loggers persist across calls). infuser therefore
drives its own loop with **Fabric**: one ``Fabric`` per run, launched once (so DDP/FSDP worker
processes start once, not once per phase), supplying the strategy, precision, loggers and
checkpoint I/O. The two roles are LightningModules with manual optimisation set up through it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from jsonargparse import lazy_instance

from infuser.artifacts import RunDirectory, default_run_dir, write_json
from infuser.data.documents import DocumentSource, ToyDocuments
from infuser.data.prompts import PromptTemplates
from infuser.data.question_sets import QuestionSource, ToyQuestions
from infuser.influence.base import InfluenceEstimator
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.loop import Evaluation, InfuserLoop, LoopConfig, LoopState
from infuser.rl.advantages import DuGRPOAdvantage, MeanCentredAdvantage
from infuser.roles.generator import Generator
from infuser.roles.policy import RoleConfig
from infuser.roles.solver import Solver

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """What Fabric provides: devices, distributed strategy, precision and loggers.

    Attributes:
        accelerator: ``cpu``, ``gpu``, ``auto``...
        devices: devices per node (an int, a list of indices, or ``auto``).
        num_nodes: nodes.
        strategy: any Lightning strategy name (``auto``, ``ddp``, ``fsdp``, ``deepspeed``...).
        precision: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``.
        loggers: ``csv`` and/or ``tensorboard``, written under ``run_dir``.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    loggers: list[Literal["csv", "tensorboard"]] = field(default_factory=lambda: ["csv"])


@dataclass
class Summary:
    """The headline numbers of a run, written to ``run_dir/summary.json``."""

    iterations: int
    target_accuracy_start: float
    target_accuracy_end: float
    heldout_accuracy_start: float | None
    heldout_accuracy_end: float | None
    seconds_total: float
    seconds_by_stage: dict[str, float]
    run_dir: str


def _loggers(names: list[str], root: Path) -> list:
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    made = []
    for name in names:
        made.append(CSVLogger(root, name="logs", version="") if name == "csv"
                    else TensorBoardLogger(root, name="tensorboard", version=""))
    return made


def _state_payload(state: LoopState, documents: DocumentSource) -> dict:
    return {
        "loop": dataclasses.asdict(state),
        "documents": documents.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }


def _restore(state: dict, loop: InfuserLoop) -> None:
    saved = state["loop"]
    evaluations = {k: Evaluation(**saved[k]) if saved[k] else None for k in ("first_evaluation", "last_evaluation")}
    loop.state = LoopState(**{**saved, **evaluations})
    loop.documents.load_state_dict(state["documents"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])


def fit(
    generator: RoleConfig = RoleConfig(advantage=lazy_instance(DuGRPOAdvantage)),
    solver: RoleConfig = RoleConfig(advantage=lazy_instance(MeanCentredAdvantage)),
    documents: DocumentSource = lazy_instance(ToyDocuments),
    target_set: QuestionSource = lazy_instance(ToyQuestions, split="target", size=64),
    heldout_set: QuestionSource | None = lazy_instance(ToyQuestions, split="heldout", size=200),
    influence: InfluenceEstimator = lazy_instance(OptimizerAwareInfluence),
    loop: LoopConfig = LoopConfig(),
    prompts: PromptTemplates = PromptTemplates(),
    trainer: TrainerConfig = TrainerConfig(),
    run_dir: str | None = None,
    ckpt_path: str | None = None,
    seed: int = 42,
) -> Summary:
    """Co-train a Generator and a Solver with influence-guided self-evolution.

    Args:
        generator: the question-drafting role (DuGRPO advantages by default).
        solver: the answering role (Dr.GRPO advantages by default).
        documents: where the Generator's documents come from.
        target_set: the questions whose gradient defines "useful".
        heldout_set: questions from the target distribution, never trained on, for reporting.
        influence: how a drafted question is scored.
        loop: the schedule.
        prompts: prompt templates of both roles.
        trainer: devices, strategy, precision and loggers.
        run_dir: where everything is written (default: a new ``runs/<timestamp>``).
        ckpt_path: resume from this checkpoint, or ``last`` for the newest one in ``run_dir``.
        seed: seeds model-independent randomness (sampling streams, shuffles).
    """
    run = RunDirectory(run_dir or default_run_dir())
    torch.set_flush_denormal(True)  # Adam moments decaying into denormals make CPU steps crawl
    fabric = L.Fabric(accelerator=trainer.accelerator, devices=trainer.devices, num_nodes=trainer.num_nodes,
                      strategy=trainer.strategy, precision=trainer.precision, loggers=_loggers(trainer.loggers, run.root))
    fabric.launch()
    fabric.seed_everything(seed)
    target = target_set.load()
    heldout = heldout_set.load() if heldout_set is not None else None
    with fabric.init_module():
        gen = Generator(generator, prompts)
        sol = Solver(solver, prompts)
    documents.setup(gen.tokenizer)
    modules = {}
    for name, role in (("generator", gen), ("solver", sol)):
        wrapped, optimizer = fabric.setup(role, role.configure_optimizers())
        wrapped.mark_forward_method("training_step")
        role.bind(wrapped)
        modules[name], modules[f"{name}_optimizer"] = wrapped, optimizer
    infuser_loop = InfuserLoop(fabric, gen, sol, documents, target, heldout, influence, loop, run, seed)
    if fabric.global_rank == 0:
        run.root.mkdir(parents=True, exist_ok=True)

    def checkpoint(iteration: int) -> None:
        path = run.checkpoint_path(iteration)
        fabric.save(path, {**modules, **_state_payload(infuser_loop.state, documents)})
        fabric.barrier()
        if fabric.global_rank == 0:
            run.prune_checkpoints(loop.keep_checkpoints)

    if ckpt_path is not None:
        _resume(fabric, run, ckpt_path, modules, infuser_loop)
    state = infuser_loop.fit(checkpoint)
    first, last = state.first_evaluation, state.last_evaluation
    summary = Summary(
        iterations=state.iteration, target_accuracy_start=first.target_accuracy,
        target_accuracy_end=last.target_accuracy, heldout_accuracy_start=first.heldout_accuracy,
        heldout_accuracy_end=last.heldout_accuracy, seconds_total=round(state.seconds_total, 2),
        seconds_by_stage={k: round(v, 2) for k, v in state.seconds_by_stage.items()}, run_dir=str(run.root),
    )
    if fabric.global_rank == 0:
        for name, role in (("generator", gen), ("solver", sol)):
            role.export(run.root / "final" / name)
        write_json(run.root / "summary.json", dataclasses.asdict(summary))
        _print_summary(summary)
    for logger in fabric.loggers:
        logger.finalize("success")
    return summary


def _resume(fabric: L.Fabric, run: RunDirectory, ckpt_path: str, modules: dict, loop: InfuserLoop) -> None:
    """Load ``ckpt_path`` (or, for ``last``, the newest checkpoint that loads)."""
    candidates = list(reversed(run.completed_checkpoints())) if ckpt_path == "last" else [Path(ckpt_path)]
    if not candidates:
        log.warning("ckpt_path=last but %s holds no checkpoint; starting from scratch", run.checkpoints)
        return
    for path in candidates:
        state = {**modules, "loop": None, "documents": None, "rng": None}
        try:
            remainder = fabric.load(path, state)
        except Exception as error:  # noqa: BLE001 - a corrupt file must not stop the fallback
            if ckpt_path != "last":
                raise RuntimeError(f"cannot load checkpoint {path}: {error}") from error
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, error)
            continue
        _restore({**state, **(remainder or {})}, loop)
        log.info("resumed from %s after iteration %d", path, loop.state.iteration)
        return
    raise RuntimeError(f"no loadable checkpoint in {run.checkpoints}")


def _print_summary(summary: Summary) -> None:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"\n{'':<18}{'start':>8}{'end':>8}")
    print(f"{'target accuracy':<18}{fmt(summary.target_accuracy_start):>8}{fmt(summary.target_accuracy_end):>8}")
    print(f"{'held-out accuracy':<18}{fmt(summary.heldout_accuracy_start):>8}{fmt(summary.heldout_accuracy_end):>8}")
    print(f"{summary.iterations} iterations in {summary.seconds_total:.0f} s; "
          f"slowest stage: {max(summary.seconds_by_stage, key=summary.seconds_by_stage.get)}")
    print(f"written to {summary.run_dir} (summary.json, questions/, checkpoints/, logs/)")
