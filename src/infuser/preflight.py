"""Refusing a run that cannot work before any model loads: arguments, model sources and what
components need.

A wrong path or an impossible combination should cost seconds, not the minutes it takes to load
two models and run a first evaluation (with an 8B model, much more). :func:`~infuser.fit.fit` runs
these checks before anything is loaded:

* the arguments (:func:`check_resume_arguments`, :func:`check_strategy`,
  :func:`check_model_arguments`): a resume that cannot work, a strategy that cannot sample, model
  settings that load but cannot train together;
* each role's ``model.name_or_path``: a local folder must exist and hold a saved model; a name
  that looks like a Hugging Face id must be in the local cache or, online, on the Hub;
* what the components need: an influence estimator or a generator reward may refuse a run it
  cannot work in (``check_setup``, e.g. ``lora_grad`` needs ``solver.model.lora``), and so may the task
  (``code`` refuses majority-vote labels), looking at the
  run through :class:`RunSetup` (:func:`check_before_loading`);
* what the documents must know for ``loop.golden_answers`` and ``loop.scripted_drafts``
  (:func:`check_documents`).

Every refusal is one :class:`~infuser.config.ConfigurationError` naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from infuser import registry
from infuser.config import (
    FSDP,
    SHARDING_STRATEGIES,
    ConfigurationError,
    LoopConfig,
    RoleConfig,
    RunSetup,
    TrainerConfig,
)
from infuser.data.documents import DocumentSource, SyntheticDocuments
from infuser.model_config import BUILTIN_PREFIX, TOY_MODEL_ID, ModelConfig, base_differences

if TYPE_CHECKING:
    from infuser.influence.base import InfluenceEstimator
    from infuser.rl.generator_rewards import GeneratorReward
    from infuser.tasks.base import Task

# Files that make a folder loadable by ``from_pretrained``: a model, or a peft adapter on a base.
_MODEL_FILES = ("config.json", "adapter_config.json")


def check_before_loading(setup: RunSetup, influence: InfluenceEstimator, generator_reward: GeneratorReward,
                         shadows: dict[str, InfluenceEstimator] | None = None, task: Task | None = None) -> None:
    """Raise :class:`~infuser.config.ConfigurationError` for a run that cannot work (see the module
    docstring). The influence estimator is asked only when it will run: when the reward uses
    influence and the Generator drafts the Solver's questions. Shadow estimators score beside it,
    so they need it to run."""
    checked: set[tuple[str, str | None]] = set()
    for role, config in (("generator", setup.generator), ("solver", setup.solver)):
        source = (config.model.name_or_path, config.model.revision)
        if source not in checked:
            check_model_source(f"{role}.model", config.model)
            checked.add(source)
    generator_reward.check_setup(setup)
    if task is not None:
        task.check_setup(setup)
    scores_influence = generator_reward.needs_influence and setup.loop.solver_data == "generated"
    if scores_influence:
        influence.check_setup(setup)
    if shadows and not scores_influence:
        raise ConfigurationError(f"shadow_influence: its estimators ({', '.join(shadows)}) score beside the reward's "
                                 f"influence, which this run does not compute (generator_reward: "
                                 f"{type(generator_reward).__name__}, loop.solver_data: {setup.loop.solver_data}); "
                                 f"use an influence reward with loop.solver_data: generated, or drop shadow_influence")
    for estimator in (shadows or {}).values():
        estimator.check_setup(setup)


def check_documents(loop: LoopConfig, documents: DocumentSource) -> None:
    """Refuse ``loop.golden_answers: environment_checked`` and ``loop.scripted_drafts`` on a documents
    source that knows no facts of its documents, and a scripted arm its world does not define."""
    needs = [f"loop.golden_answers: {loop.golden_answers}"] if loop.golden_answers == "environment_checked" else []
    needs += [f"loop.scripted_drafts: {loop.scripted_drafts}"] if loop.scripted_drafts is not None else []
    if not needs:
        return
    if not isinstance(documents, SyntheticDocuments):
        raise ConfigurationError(f"{needs[0]} needs documents generated from facts the source knows (the toy worlds: "
                                 f"documents: toy or rules); {type(documents).__name__} cannot recompute answers")
    if loop.scripted_drafts is not None:
        try:
            documents.scripted_kinds(loop.scripted_drafts)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None


def check_resume_arguments(run_dir: str | None, ckpt_path: str | None) -> None:
    """Refuse a resume that cannot work, before anything is built."""
    if ckpt_path == "last" and run_dir is None:
        raise ConfigurationError("ckpt_path: `last` resumes the run in run_dir; set run_dir to that run's folder")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).exists():
        raise ConfigurationError(f"ckpt_path: no such checkpoint: {ckpt_path}")


def check_strategy(trainer: TrainerConfig) -> None:
    """Refuse ``trainer.strategy`` names whose sharding cannot sample or compute influence: Lightning's
    FSDP1 variants and DeepSpeed ZeRO-3 gather parameters only inside their wrapper's forward."""
    if trainer.strategy != FSDP and trainer.strategy.startswith(FSDP):
        raise ConfigurationError(
            f"trainer.strategy: {trainer.strategy} is a variant of Lightning's FSDPStrategy (FSDP1), which gathers "
            "parameters only inside its wrapper's forward, while infuser samples and computes influence by calling "
            "the model itself; use `fsdp` (FSDP2, sharded per decoder layer)")
    if "deepspeed" in trainer.strategy and any(stage in trainer.strategy for stage in ("stage_3", "stage3")):
        raise ConfigurationError(
            f"trainer.strategy: {trainer.strategy} (ZeRO-3) gathers parameters only inside the DeepSpeed engine's "
            "forward, while infuser samples and computes influence by calling the model itself; use `fsdp` "
            "(parameters, gradients and optimizer states sharded) or a DeepSpeed stage below 3")


# Precisions that leave a 4-bit base alone: the "-true" plugins other than 32-true cast every
# floating-point parameter (and transformer-engine replaces the linear layers).
_QUANTIZATION_PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16", "16")


def check_model_arguments(generator: RoleConfig, solver: RoleConfig, trainer: TrainerConfig, share_base: bool) -> None:
    """Refuse model settings that load but cannot train together, before any weights are read.

    (A 4-bit base without LoRA is refused by ``ModelConfig`` itself; gradient checkpointing
    turns prompt sharing off by itself.)
    """
    models = {"generator": generator.model, "solver": solver.model}
    sharded = any(name in trainer.strategy for name in SHARDING_STRATEGIES)
    for role, model in models.items():
        if model.quantization is None:
            continue
        if trainer.precision not in _QUANTIZATION_PRECISIONS:
            raise ConfigurationError(
                f"trainer.precision: {trainer.precision} cannot train a 4-bit base ({role}.model.quantization): it "
                "casts every floating-point parameter, which undoes the float32 layers and the quantization state "
                "of the prepared base; use 32-true or bf16-mixed (4-bit layers compute in "
                "quantization.compute_dtype either way)")
        if sharded:
            raise ConfigurationError(
                f"trainer.strategy: {trainer.strategy} cannot shard a 4-bit base ({role}.model.quantization); use "
                "ddp (every process loads its own 4-bit copy) or drop the quantization")
    if not share_base:
        return
    missing = [f"{role}.model.lora" for role, model in models.items() if model.lora is None]
    if missing:
        raise ConfigurationError(f"share_base: the roles train LoRA adapters on one frozen base; set "
                                 f"{' and '.join(missing)}")
    differences = base_differences(generator.model, solver.model)
    if differences:
        key = differences[0]
        raise ConfigurationError(
            f"share_base: generator.model.{key} ({getattr(generator.model, key)!r}) differs from solver.model.{key} "
            f"({getattr(solver.model, key)!r}); the roles share one base model, so every model key but lora, "
            "chat_template and system_prompt must match")
    if sharded:
        raise ConfigurationError(f"share_base: trainer.strategy {trainer.strategy} shards each role's module on its "
                                 "own and cannot shard one base shared by both; use ddp or a single device")


def check_model_source(key: str, model: ModelConfig) -> None:
    """Refuse a ``model.name_or_path`` (at config ``key``, e.g. ``solver.model``) that names nothing
    loadable, without loading it."""
    name, where = model.name_or_path, f"{key}.name_or_path"
    if name.startswith(BUILTIN_PREFIX):
        if name.removeprefix(BUILTIN_PREFIX) not in registry.registered("builtin_model"):
            raise ConfigurationError(f"{where}: no builtin model named {name}; installed: "
                                     f"{registry.installed('builtin_model')}")
        return
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / file).is_file() for file in _MODEL_FILES):
            raise ConfigurationError(f"{where}: {name} holds no {' or '.join(_MODEL_FILES)}; expected a folder written "
                                     f"by save_pretrained, a Hugging Face id or {TOY_MODEL_ID}")
        return
    if path.exists():
        raise ConfigurationError(f"{where}: {name} is a file; expected a folder written by save_pretrained, a Hugging "
                                 f"Face id or {TOY_MODEL_ID}")
    if not _is_hub_id(name):
        raise ConfigurationError(f"{where}: no such folder: {name}")
    _check_hub_model(key, name, model.revision)


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_hub_model(key: str, repo_id: str, revision: str | None) -> None:
    """A Hugging Face id must be in the local cache, or (online) exist on the Hub."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if any(isinstance(try_to_load_from_cache(repo_id, file, revision=revision), str) for file in _MODEL_FILES):
        return
    where = (f"{key}.name_or_path: {repo_id} is not a local folder and not in the Hugging Face cache "
             f"({constants.HF_HUB_CACHE})")
    if _offline(constants.HF_HUB_OFFLINE):
        raise ConfigurationError(f"{where}, and downloads are off (HF_HUB_OFFLINE); download it while online or give "
                                 "a local folder")
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=10)
    except GatedRepoError:
        return  # it exists; from_pretrained says how to get access
    except RevisionNotFoundError:
        raise ConfigurationError(f"{key}.revision: the Hugging Face Hub has no revision {revision!r} of "
                                 f"{repo_id}") from None
    except RepositoryNotFoundError:
        raise ConfigurationError(f"{where}, and the Hugging Face Hub has no model of that name (a private one needs "
                                 "`hf auth login`)") from None
    except Exception as error:  # noqa: BLE001 - the HTTP client's connection errors differ between versions
        raise ConfigurationError(f"{where}, and the Hugging Face Hub cannot be reached ({type(error).__name__}: "
                                 f"{error}); are you offline?") from None


def _offline(configured: bool) -> bool:
    """Offline mode as huggingface_hub read it at import, or as the environment sets it now."""
    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return configured or any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)
