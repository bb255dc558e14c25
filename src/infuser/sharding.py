"""FSDP for infuser: each role's model sharded per decoder layer with FSDP2, under Lightning.

``trainer.strategy: fsdp`` builds Lightning's :class:`~lightning.fabric.strategies.ModelParallelStrategy`
with a ``parallelize_fn`` that applies ``fully_shard`` to every decoder layer and then to the
model, over all processes (``data_parallel_size`` = world size, no tensor parallelism). Why not
Lightning's ``FSDPStrategy``: that is FSDP1, which wraps the module and only gathers parameters
inside the wrapper's forward, while infuser samples and computes influence by calling the model
itself. FSDP2 hooks every sharded module, so any call of the model gathers what it needs, inside
the wrapper or not. (FSDP1 also needs an accelerator; FSDP2 runs on CPU processes over gloo,
which is how it is tested.)

Lightning's checkpointing for this strategy holds one sharded model per file; infuser has two,
so :func:`save_full_checkpoint` / :func:`load_full_checkpoint` gather each role's whole weights and
optimizer state (a collective) and rank 0 writes one file. Its weights are laid out as
``fabric.save`` lays out an unsharded run's; its optimizer states are keyed by parameter name (an
unsharded run's by position), so a run resumes under the strategy that wrote its checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

log = logging.getLogger(__name__)


def fsdp_strategy(precision: str) -> ModelParallelStrategy:
    """The strategy of ``trainer.strategy: fsdp`` at ``trainer.precision``: under ``bf16-mixed`` the
    gathered parameters (and so the compute and the all-gathers) are bfloat16 while gradients are
    reduced, and master weights and optimizer states kept, in the parameters' own dtype."""
    mixed = precision in ("bf16-mixed", "bf16")

    def parallelize(role: nn.Module, mesh: DeviceMesh) -> nn.Module:
        shard_per_decoder_layer(role.model, mesh["data_parallel"], torch.bfloat16 if mixed else None)
        return role

    return _DataParallelShards(parallelize_fn=parallelize, tensor_parallel_size=1, save_distributed_checkpoint=False)


class _DataParallelShards(ModelParallelStrategy):
    """Every process a data-parallel replica: the mesh's data dimension is the world size, known only
    once Fabric has resolved ``devices`` and ``num_nodes`` (Lightning's ``auto`` means the number
    of nodes, for a tensor-parallel dimension within each node)."""

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def shard_per_decoder_layer(model: nn.Module, mesh: DeviceMesh, compute_dtype: torch.dtype | None = None) -> None:
    """``fully_shard`` every decoder layer of ``model`` (a transformers model, possibly in a peft
    wrapper), then the model itself: one layer's parameters are gathered at a time.

    Decoder layers are the classes the model lists in ``_no_split_modules`` (transformers' own
    marker for "keep on one device"); a model without it is sharded as one unit, with a warning
    (its whole parameters are then gathered at once).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer_names = set(getattr(base, "_no_split_modules", None) or ())
    policy = (MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32) if compute_dtype is not None
              else MixedPrecisionPolicy())
    layers = [module for module in model.modules() if type(module).__name__ in layer_names]
    if not layers:
        log.warning("%s lists no decoder layer class (_no_split_modules): it is sharded as one FSDP unit, so "
                    "every forward gathers all of its parameters at once", type(base).__name__)
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    # FSDP keeps the root's parameters gathered after a forward by default (a backward usually
    # follows); sampling runs forwards alone, and influence must find every parameter a shard
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Keep every FSDP unit of ``model`` gathered until the block ends (no-op for an unsharded model).

    For sampling: left to itself, FSDP gathers each layer again at every decoding step, which for
    an 8B model moves 16 GB per generated token between the processes; gathered once, it moves
    them once per sampling call, and holds the whole model (in the compute dtype) meanwhile.
    Every process must enter the block together (the gathering is a collective).
    """
    from torch.distributed.fsdp import FSDPModule

    units = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(True, recurse=False)
            unit.reshard()


def whole_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of a sharded ``model`` with whole tensors, on the CPU, for ``save_pretrained``
    (a collective: every process calls it). Tied weights (an output projection tied to the
    embeddings) come back from the gathering as separate tensors, which ``save_pretrained`` would
    write twice; only the embeddings are kept, as for an unsharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    tied = getattr(base, "all_tied_weights_keys", None) or {}
    return {key: value for key, value in whole.items()
            if not any(key == name or key.endswith(f".{name}") for name in tied)}


def save_full_checkpoint(path: Path, state: dict[str, Any], rank: int) -> None:
    """Write ``state`` to ``path`` as one file, every sharded module and its optimizer gathered whole.

    ``state`` maps names to modules, optimizers (each named ``<module name>_optimizer``) and plain
    values. Every process calls it; rank 0 writes.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    converted = {}
    for name, value in state.items():
        if isinstance(value, nn.Module):
            converted[name] = get_model_state_dict(value, options=options)
        elif isinstance(value, torch.optim.Optimizer):
            converted[name] = get_optimizer_state_dict(state[_module_of(name)], value, options=options)
        else:
            converted[name] = value
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(converted, path)


def load_full_checkpoint(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Load a :func:`save_full_checkpoint` file into the modules and optimizers of ``state`` (each
    process loads its shards), returning the file's other entries. Only tensors and plain values
    are read (``weights_only``)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    options = StateDictOptions(full_state_dict=True)
    for name, value in state.items():
        if isinstance(value, nn.Module):
            set_model_state_dict(value, saved.pop(name), options=options)
    for name, value in state.items():
        if isinstance(value, torch.optim.Optimizer):
            set_optimizer_state_dict(state[_module_of(name)], value, saved.pop(name), options=options)
    return saved


def _module_of(optimizer_name: str) -> str:
    return optimizer_name.removesuffix("_optimizer")
