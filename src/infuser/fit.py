"""``infuser fit``: build the parts from configuration, then run :class:`~infuser.loop.InfuserLoop`.

Lightning 2.x has no loop-customisation API for a Trainer, and calling ``Trainer.fit`` once per
phase is fragile (step counters, callbacks and loggers persist across calls). infuser therefore
drives its own loop with **Fabric**: one ``Fabric`` per run, launched once (so DDP/FSDP worker
processes start once, not once per phase), supplying the strategy, precision, loggers and
checkpoint I/O. The two roles are LightningModules with manual optimisation set up through it.

Resuming (``--ckpt_path last``) restores everything the next iteration reads: both roles' weights
and optimisers, the loop state (iteration counter, evaluations, metric history), the document
stream's position and the global random states. The loop's own sampling and shuffling draw from
streams seeded by ``(seed, iteration, round)``, so a resumed run repeats the original exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from jsonargparse import lazy_instance

from infuser.advantages import DuGRPOAdvantage, MeanCentredAdvantage
from infuser.artifacts import RunDirectory, default_run_dir, respect_umask, write_json
from infuser.config import FSDP, LoopConfig, RoleConfig, RunSetup, TrainerConfig
from infuser.console import quiet_libraries
from infuser.data.documents import DocumentSource
from infuser.data.prompts import PromptTemplates
from infuser.data.question_sets import QuestionSource
from infuser.influence.base import InfluenceEstimator
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.lazy import TYPE_CHECKING, lazy_import
from infuser.model_card import RunFacts, write_model_cards
from infuser.plots import plot_finished_run
from infuser.preflight import (
    check_before_loading,
    check_documents,
    check_model_arguments,
    check_resume_arguments,
    check_strategy,
)
from infuser.rl.generator_rewards import GeneratorReward, InfluenceReward
from infuser.run_config import ResolvedConfig, record
from infuser.tasks.base import Task
from infuser.tasks.multiple_choice import MultipleChoiceTask
from infuser.toy.sources import ToyDocuments, ToyQuestions
from infuser.tracking import finish, make_loggers

# The command line is parsed from this module's signature, so it imports the training stack
# (torch, Lightning, the loop and the roles) only inside the functions that run it.
if TYPE_CHECKING:
    import lightning as L
    import numpy as np
    import torch
    from lightning.fabric.strategies import ModelParallelStrategy

else:
    L = lazy_import("lightning")
    np = lazy_import("numpy")
    torch = lazy_import("torch")

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """The headline numbers of a run, written to ``run_dir/summary.json``.

    ``*_exact_*``: the Solver's mean teacher-forced probability of the canonical answers (``None``
    when the question set has none, see :class:`~infuser.data.question_sets.CanonicalAnswers`).
    """

    iterations: int
    target_accuracy_start: float
    target_accuracy_end: float
    heldout_accuracy_start: float | None
    heldout_accuracy_end: float | None
    target_exact_start: float | None
    target_exact_end: float | None
    heldout_exact_start: float | None
    heldout_exact_end: float | None
    seconds_total: float
    seconds_by_stage: dict[str, float]
    run_dir: str


def _strategy(trainer: TrainerConfig) -> str | ModelParallelStrategy:
    """What Fabric is given for ``trainer.strategy``: ``fsdp`` is infuser's FSDP2 (see
    :mod:`infuser.sharding`); any other name goes to Lightning as it is (the names it cannot run
    were refused by :func:`~infuser.preflight.check_trainer`)."""
    from infuser.sharding import fsdp_strategy

    return fsdp_strategy(trainer.precision) if trainer.strategy == FSDP else trainer.strategy


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads (``trainer.threads``; ``None``: as set), and give the
    process its own setting back afterwards (a Python caller may run several fits).

    ``OMP_NUM_THREADS`` is set alike while the run lasts: the processes Fabric launches for DDP
    inherit it, and Lightning then leaves their thread count alone instead of choosing its own.
    """
    if threads is None:
        yield
        return
    before, environment = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if environment is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = environment

def fit(
    generator: RoleConfig = RoleConfig(advantage=lazy_instance(DuGRPOAdvantage)),
    solver: RoleConfig = RoleConfig(advantage=lazy_instance(MeanCentredAdvantage)),
    documents: DocumentSource = lazy_instance(ToyDocuments),
    target_set: QuestionSource = lazy_instance(ToyQuestions, split="target", size=64),
    heldout_set: QuestionSource | None = lazy_instance(ToyQuestions, split="heldout", size=200),
    influence: InfluenceEstimator = lazy_instance(OptimizerAwareInfluence),
    generator_reward: GeneratorReward = lazy_instance(InfluenceReward),
    shadow_influence: dict[str, InfluenceEstimator] | None = None,
    task: Task = lazy_instance(MultipleChoiceTask),
    loop: LoopConfig = LoopConfig(),
    prompts: PromptTemplates = PromptTemplates(),
    trainer: TrainerConfig = TrainerConfig(),
    share_base: bool = False,
    run_dir: str | None = None,
    ckpt_path: str | None = None,
    seed: int = 42,
    _config: ResolvedConfig | None = None,
) -> Summary:
    """Co-train a Generator and a Solver with influence-guided self-evolution.

    Args:
        generator: the question-drafting role (DuGRPO advantages by default).
        solver: the answering role (Dr.GRPO advantages by default).
        documents: where the Generator's documents come from.
        target_set: the questions whose gradient defines "useful".
        heldout_set: questions from the target distribution, never trained on, for reporting.
        influence: the influence estimator (used when the generator reward asks for influence).
        generator_reward: what the Generator is rewarded for per valid question (INFUSER:
            influence; baselines: ``spice_variance``, ``rzero_uncertainty``, ``constant``).
        shadow_influence: further estimators, by a name of your choosing, that score the same
            questions as ``influence`` each iteration for comparison only: their scores go to the
            question records and the ``shadow/<name>/...`` metrics (rank agreement with the reward's
            scores, the mean score per question kind), never to a reward; the run's questions,
            metrics and weights are those of the run without them.
        task: what is drafted and answered: how a draft is parsed and validated, how an answer is
            checked (``multiple_choice``; ``infuser list task``).
        loop: the schedule.
        prompts: prompt templates of both roles.
        trainer: devices, strategy, precision and loggers.
        share_base: both roles train LoRA adapters on one frozen base model (one copy in memory
            instead of two); needs ``model.lora`` on both and otherwise identical ``model`` keys.
        run_dir: where everything is written (default: a new ``runs/<timestamp>``).
        ckpt_path: resume from this checkpoint, or ``last`` for the newest one in ``run_dir``.
        seed: seeds model-independent randomness (sampling streams, shuffles).
        _config: the resolved configuration ``infuser fit`` parsed, written to ``run_dir/config.yaml``
            (:mod:`infuser.run_config`); not a key: the command line passes it, a Python caller has none.
    """
    check_resume_arguments(run_dir, ckpt_path)
    check_model_arguments(generator, solver, trainer, share_base)
    check_strategy(trainer)
    check_before_loading(RunSetup(generator, solver, loop, trainer.strategy, share_base), influence, generator_reward,
                         shadow_influence or {}, task)
    check_documents(loop, documents)
    # The training stack is imported once the arguments are known to work (a refusal takes a second).
    from infuser.checkpointing import Checkpointer
    from infuser.eval.during_fit import BenchmarkEvaluation
    from infuser.loop import InfuserLoop, QuestionSets
    from infuser.models import SharedBase, load_tokenizer
    from infuser.rl.update import PolicyUpdate
    from infuser.roles.generator import Generator
    from infuser.roles.solver import Solver

    with _torch_threads(trainer.threads):
        quiet_libraries()
        run = RunDirectory(run_dir or default_run_dir())
        torch.set_flush_denormal(True)  # Adam moments decaying into denormals make CPU steps crawl
        fabric = L.Fabric(accelerator=trainer.accelerator, devices=trainer.devices, num_nodes=trainer.num_nodes,
                          strategy=_strategy(trainer), precision=trainer.precision,
                          loggers=make_loggers(trainer.loggers, run.root, resuming=ckpt_path is not None))
        fabric.launch()
        task.check_processes(fabric.world_size)
        if _config is not None and fabric.global_rank == 0:
            record(_config, run.root, resuming=ckpt_path is not None)
        fabric.seed_everything(seed)
        # Every data file is read before any model is loaded: bad input fails in seconds, not after
        # the weights of a large model have been read.
        questions = QuestionSets.load(target_set, heldout_set)
        benchmarks = BenchmarkEvaluation(loop.eval_benchmarks) if loop.eval_benchmarks is not None else None
        documents.setup(load_tokenizer(generator.model))
        # One role at a time, each handed to the strategy before the next loads: under FSDP a process
        # then never holds two whole models (an 8B float32 copy is 32 GB of host memory per process).
        with fabric.init_module():
            shared = SharedBase(fabric.device) if share_base else None
            gen = Generator(generator, prompts, task, device=fabric.device, shared=shared)
        generator_update = PolicyUpdate.set_up(fabric, gen)
        with fabric.init_module():
            sol = Solver(solver, prompts, task, device=fabric.device, shared=shared)
        solver_update = PolicyUpdate.set_up(fabric, sol)
        modules = {"generator": gen, "generator_optimizer": gen.optimizer, "solver": sol, "solver_optimizer": sol.optimizer}
        infuser_loop = InfuserLoop(fabric=fabric, generator=gen, solver=sol, generator_update=generator_update,
                                   solver_update=solver_update, documents=documents, questions=questions,
                                   influence=influence, reward=generator_reward, config=loop, run=run, seed=seed,
                                   benchmarks=benchmarks, shadows=shadow_influence)
        if fabric.global_rank == 0:
            run.root.mkdir(parents=True, exist_ok=True)

        checkpoints = Checkpointer(fabric, run, modules, infuser_loop, keep=loop.keep_checkpoints)
        checkpoints.discard_unfinished()
        if ckpt_path is not None:
            checkpoints.resume(ckpt_path)
        state = infuser_loop.fit(checkpoints.save)
        first, last = state.first_evaluation, state.last_evaluation
        summary = Summary(
            iterations=state.iteration, target_accuracy_start=first.target_accuracy,
            target_accuracy_end=last.target_accuracy, heldout_accuracy_start=first.heldout_accuracy,
            heldout_accuracy_end=last.heldout_accuracy, target_exact_start=first.target_exact,
            target_exact_end=last.target_exact, heldout_exact_start=first.heldout_exact,
            heldout_exact_end=last.heldout_exact, seconds_total=round(state.seconds_total, 2),
            seconds_by_stage={k: round(v, 2) for k, v in state.seconds_by_stage.items()}, run_dir=str(run.root),
        )
        for name, role in (("generator", gen), ("solver", sol)):
            role.export(run.root / "final" / name)
        if fabric.global_rank == 0:
            write_model_cards(run.root / "final", {"generator": generator, "solver": solver}, RunFacts(
                reward=type(generator_reward).__name__, loop=loop, share_base=share_base, seed=seed,
                influence=type(influence).__name__ if generator_reward.needs_influence else None,
                summary=dataclasses.asdict(summary)))
            respect_umask(run.root / "final")
            write_json(run.root / "summary.json", dataclasses.asdict(summary))
            plot_finished_run(run.root)
            _print_summary(summary)
        finish(fabric.loggers)
        return summary


def _print_summary(summary: Summary) -> None:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"\n{'':<18}{'start':>8}{'end':>8}")
    print(f"{'target accuracy':<18}{fmt(summary.target_accuracy_start):>8}{fmt(summary.target_accuracy_end):>8}")
    print(f"{'held-out accuracy':<18}{fmt(summary.heldout_accuracy_start):>8}{fmt(summary.heldout_accuracy_end):>8}")
    if summary.heldout_exact_start is not None:
        print(f"{'held-out exact':<18}{fmt(summary.heldout_exact_start):>8}{fmt(summary.heldout_exact_end):>8}")
    print(f"{summary.iterations} iterations in {summary.seconds_total:.0f} s; "
          f"slowest stage: {max(summary.seconds_by_stage, key=summary.seconds_by_stage.get)}")
    print(f"written to {summary.run_dir} (summary.json, plots/, logs/, questions/, samples/, checkpoints/, final/)")
