"""Loading the base causal LM (and its tokenizer) that both roles start from.

:func:`load_causal_lm` takes a :class:`ModelConfig` from YAML. ``builtin:<name>`` names a
checkpoint a package registers in the ``infuser.builtin_models`` entry-point group (infuser's own:
the bundled toy bases ``builtin:toy`` and ``builtin:toy-rules``), which then loads through the same
``from_pretrained`` path as any Hugging Face checkpoint. With ``quantization`` the frozen base is
loaded in 4 bits through bitsandbytes and only its LoRA adapter trains (QLoRA).
:class:`SharedBase` holds one base for several roles, each training its own LoRA adapter on it
(``infuser fit --share_base true``), so one device holds the base once instead of once per role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from infuser import registry
from infuser.model_config import BUILTIN_PREFIX, LoraConfig, ModelConfig, base_differences

if TYPE_CHECKING:
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel


def resolve_path(name_or_path: str) -> str:
    """Turn ``builtin:<name>`` into the directory of the checkpoint registered as ``<name>`` in the
    ``infuser.builtin_models`` entry-point group; leave anything else alone."""
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return name_or_path
    return str(registry.resolve("builtin_model", name_or_path.removeprefix(BUILTIN_PREFIX))())


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(config.name_or_path), revision=config.revision,
                                              trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(config: ModelConfig, device: torch.device | None = None) -> PreTrainedModel:
    """The model described by ``config``, LoRA-wrapped when asked, in train mode.

    ``device`` is where a 4-bit base is placed (see :func:`load_base_model`); pass the process's
    own device (``fabric.device``).
    """
    model = load_base_model(config, device)
    if config.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, _peft_lora(config.lora))
    model.train()
    return model


def load_base_model(config: ModelConfig, device: torch.device | None = None) -> PreTrainedModel:
    """The base model of ``config`` without an adapter: checkpointing set up, and 4-bit with
    ``quantization``.

    bitsandbytes quantizes while the weights load, so a 4-bit base is loaded straight onto
    ``device`` (default: the current CUDA device, else the CPU); under DDP each process must
    pass its own. Other models load as transformers places them and Fabric moves them.
    """
    kwargs = dict(config.extra_kwargs)
    if config.attn_implementation is not None:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.quantization is not None:
        kwargs["quantization_config"] = config.quantization.bitsandbytes()
        kwargs["device_map"] = device_map(device)
    model = AutoModelForCausalLM.from_pretrained(
        resolve_path(config.name_or_path), revision=config.revision, dtype=getattr(torch, config.dtype),
        trust_remote_code=config.trust_remote_code, **kwargs,
    )
    if config.quantization is not None:
        from peft import prepare_model_for_kbit_training

        _keep_4bit_layout(model)
        # freezes the base, keeps its unquantized layers in float32 and sets up checkpointing
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.gradient_checkpointing:
        # Only the default: the sampler passes use_cache=True and runs in eval mode, where
        # transformers keeps the cache under checkpointing.
        model.config.use_cache = False
    return model


def _keep_4bit_layout(model: nn.Module) -> None:
    """Switch off bitsandbytes' CPU inference path, which repacks 4-bit weights in place.

    On CPUs with AVX512-BF16, a 4-bit layer run in eval mode without grad (the sampler) repacks
    its weight with the scales in bfloat16, and every ``state_dict()`` call unpacks it again and
    re-quantizes the scales: the frozen base would drift with each checkpoint (and the repacking
    fails on layers under 64 inputs wide). Training never takes that path; with it off, sampling
    runs on exactly the weights training sees. GPUs are unaffected.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def device_map(device: torch.device | None) -> dict[str, int | str]:
    """A ``from_pretrained`` device map putting the whole model on ``device``."""
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        return {"": device.index if device.index is not None else torch.cuda.current_device()}
    return {"": str(device)}


class SharedBase:
    """One frozen base model that several roles train through LoRA adapters of their own.

    Each role attaches its adapter under its own name (:meth:`attach`; the first call loads the
    base) and activates it (:meth:`activate`) before it samples, scores, updates or exports.
    peft ties ``requires_grad`` to the active adapter, so at any time exactly the active role's
    adapter is trainable and the base never is.

    Activation is deliberately not undone at the end of a block: a gradient is often taken after
    the forward pass that built it has returned (influence estimators call ``backward`` on the
    Solver's ``surrogate_loss``), and switching adapters in between would switch off
    ``requires_grad`` of the very parameters the pending backward pass differentiates.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self._model: PeftModel | None = None
        self._config: ModelConfig | None = None

    @property
    def model(self) -> PeftModel:
        """The base with every attached adapter."""
        if self._model is None:
            raise RuntimeError("SharedBase.model: no adapter attached yet")
        return self._model

    def attach(self, name: str, config: ModelConfig) -> PeftModel:
        """Add adapter ``name`` from ``config.lora``; the first call loads the base from ``config``."""
        if config.lora is None:
            raise ValueError(f"share_base: the {name} role needs model.lora (on a shared base, roles train adapters "
                             "only)")
        if self._model is None:
            from peft import get_peft_model

            self._model = get_peft_model(load_base_model(config, self.device), _peft_lora(config.lora),
                                         adapter_name=name)
            self._config = config
        else:
            differences = base_differences(self._config, config)
            if differences:
                raise ValueError(f"share_base: the {name} role's model.{differences[0]} differs from the shared base's")
            if name in self._model.peft_config:
                raise ValueError(f"share_base: an adapter named {name!r} is already attached")
            self._model.add_adapter(name, _peft_lora(config.lora))
        self._model.train()
        return self._model

    def activate(self, name: str) -> None:
        """Make adapter ``name`` the one that runs and trains (until another is activated)."""
        if self.model.active_adapter != name:
            self.model.set_adapter(name)

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """Adapter ``name``'s weights, in module order (the same order on every call)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        found: list[nn.Parameter] = []
        for module in self.model.modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            for layer_name in module.adapter_layer_names:
                layers = getattr(module, layer_name)
                if name in layers:
                    item = layers[name]
                    found.extend(item.parameters() if isinstance(item, nn.Module) else [item])
        if not found:
            raise ValueError(f"share_base: no adapter named {name!r} is attached")
        return found


def _peft_lora(config: LoraConfig) -> PeftLoraConfig:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=config.target_modules, task_type="CAUSAL_LM")
