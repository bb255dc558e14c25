"""The configuration of a role's model: which base, in which dtype, with which adapter or 4-bit
quantization, and how its prompts are rendered (``generator.model``, ``solver.model``).

Torch-free, like :mod:`infuser.config`, which holds it in ``RoleConfig`` (the command line is
parsed from these signatures without the training stack).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig

BUILTIN_PREFIX = "builtin:"  # a checkpoint registered in the infuser.builtin_models entry-point group
TOY_MODEL_ID = f"{BUILTIN_PREFIX}toy"

DTypeName = Literal["float32", "bfloat16", "float16"]

# ``from_pretrained`` arguments that have a key of their own: passing them through ``extra_kwargs``
# would bypass it (or clash with what the loader sets).
_RESERVED_KWARGS = {
    "trust_remote_code": "set model.trust_remote_code",
    "quantization_config": "set model.quantization",
    "device_map": "each process loads onto its own device",
}


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
class QuantizationConfig:
    """A 4-bit frozen base through bitsandbytes (QLoRA); the LoRA adapter trains in full precision.

    Attributes:
        quant_type: ``nf4`` (QLoRA's normal-float code) or ``fp4``.
        double_quant: quantize the per-block scales too (about 0.4 bit per weight less).
        compute_dtype: the dtype 4-bit weights are dequantized to for each matmul.
    """

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: DTypeName = "bfloat16"

    def bitsandbytes(self) -> BitsAndBytesConfig:
        """The equivalent ``transformers.BitsAndBytesConfig``."""
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=self.quant_type,
                                  bnb_4bit_use_double_quant=self.double_quant,
                                  bnb_4bit_compute_dtype=getattr(torch, self.compute_dtype))


@dataclass
class ModelConfig:
    """Where a role's model comes from and how it is loaded.

    Attributes:
        name_or_path: a Hugging Face id, a local directory, or ``builtin:<name>`` (a registered
            checkpoint: the bundled toy bases ``builtin:toy`` and ``builtin:toy-rules``).
        revision: a pinned revision for hub ids.
        dtype: parameter dtype (of the layers that stay unquantized, with ``quantization``).
        attn_implementation: ``sdpa``, ``eager``, ``flash_attention_2``...; ``None`` lets
            transformers choose.
        trust_remote_code: run code shipped with the checkpoint; off unless you trust it.
        lora: wrap the model with a LoRA adapter (only the adapter trains).
        quantization: load the base in 4 bits (QLoRA); needs ``lora``, since a 4-bit base
            cannot be trained itself.
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant;
            switched off while sampling).
        extra_kwargs: further ``from_pretrained`` arguments.
        chat_template: render this role's prompts through the tokenizer's chat template and stop
            at its end-of-turn token (:mod:`infuser.data.chat`): ``true``, ``false``, or ``auto``
            (when the tokenizer has one). Default ``false``: base models' tokenizers often carry a
            template (Qwen3-*-Base do) that the base was never tuned on; set ``auto`` or ``true``
            for an instruct model.
        system_prompt: an optional system turn before each prompt (without the template, a first
            paragraph).
    """

    name_or_path: str = TOY_MODEL_ID
    revision: str | None = None
    dtype: DTypeName = "float32"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    lora: LoraConfig | None = None
    quantization: QuantizationConfig | None = None
    gradient_checkpointing: bool = False
    extra_kwargs: dict = field(default_factory=dict)
    chat_template: bool | Literal["auto"] = False
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        # Code shipped with a checkpoint runs only when asked for by name, never through a side door.
        for key, instead in _RESERVED_KWARGS.items():
            if key in self.extra_kwargs:
                raise ValueError(f"model.extra_kwargs: {instead} instead of passing {key} here")
        if self.quantization is not None and self.lora is None:
            raise ValueError("model.quantization: a 4-bit base cannot be trained; set model.lora too (QLoRA trains "
                             "the adapter only)")


# ``model`` keys that do not describe the base: two roles sharing one base may differ in them.
_PER_ROLE_MODEL_KEYS = ("lora", "chat_template", "system_prompt")


def base_differences(first: ModelConfig, second: ModelConfig) -> list[str]:
    """The keys, other than the per-role ones (``lora``, ``chat_template``, ``system_prompt``), in
    which two model configurations differ: two roles can share one base only when there are none."""
    return [f.name for f in dataclasses.fields(ModelConfig)
            if f.name not in _PER_ROLE_MODEL_KEYS and getattr(first, f.name) != getattr(second, f.name)]
