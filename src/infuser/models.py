"""Loading the base causal LM (and its tokenizer) that both roles start from.

One function, :func:`load_causal_lm`, takes a :class:`ModelConfig` from YAML. ``builtin:toy``
names the bundled toy base, which is built and cached on first use and then loaded through the
same ``from_pretrained`` path as any Hugging Face checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from infuser.toy.base_model import TOY_MODEL_ID, ensure_toy_base

DTypeName = Literal["float32", "bfloat16", "float16"]


@dataclass
class LoraConfig:
    """A peft LoRA adapter on the base.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter input.
        target_modules: module names to adapt, or ``all-linear``.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"


@dataclass
class ModelConfig:
    """Where a role's model comes from and how it is loaded.

    Attributes:
        name_or_path: a Hugging Face id, a local directory, or ``builtin:toy``.
        revision: a pinned revision for hub ids.
        dtype: parameter dtype.
        attn_implementation: ``sdpa``, ``eager``, ``flash_attention_2``...; ``None`` lets
            transformers choose.
        trust_remote_code: run code shipped with the checkpoint; off unless you trust it.
        lora: wrap the model with a LoRA adapter (only the adapter trains).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant;
            switched off while sampling).
    """

    name_or_path: str = TOY_MODEL_ID
    revision: str | None = None
    dtype: DTypeName = "float32"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    lora: LoraConfig | None = None
    gradient_checkpointing: bool = False
    extra_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Code shipped with a checkpoint runs only when asked for by name, never through a side door.
        if "trust_remote_code" in self.extra_kwargs:
            raise ValueError("model.extra_kwargs: set model.trust_remote_code instead of passing trust_remote_code "
                             "here")


def resolve_path(name_or_path: str) -> str:
    """Turn ``builtin:toy`` into the cached toy checkpoint; leave anything else alone."""
    if name_or_path == TOY_MODEL_ID:
        return str(ensure_toy_base())
    return name_or_path


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(config.name_or_path), revision=config.revision,
                                              trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(config: ModelConfig) -> PreTrainedModel:
    """The model described by ``config``, LoRA-wrapped when asked, in train mode."""
    kwargs = dict(config.extra_kwargs)
    if config.attn_implementation is not None:
        kwargs["attn_implementation"] = config.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(
        resolve_path(config.name_or_path), revision=config.revision, dtype=getattr(torch, config.dtype),
        trust_remote_code=config.trust_remote_code, **kwargs,
    )
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is not None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        model = get_peft_model(model, PeftLoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules, task_type="CAUSAL_LM",
        ))
    model.train()
    return model
