"""Running the model of ``infuser eval``: its configuration and sampling settings, loading it
(through :mod:`infuser.models`, so ``builtin:`` names work, with an optional LoRA adapter) and
sampling k completions per prompt through :func:`infuser.rollout.engine.generate`.

torch, the model loader and the rollout engine are imported inside the functions that use them:
parsing ``infuser eval`` and scoring predictions never import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infuser.config import EvalSamplingConfig
from infuser.data.chat import render_prompt


@dataclass
class EvalModelConfig:
    """The model to evaluate.

    Attributes:
        name_or_path: Hub id, local ``save_pretrained`` directory (e.g. a model ``fit``
            exported), or ``builtin:toy``.
        revision: pinned Hub revision of the model.
        adapter: optional LoRA adapter directory (PEFT) applied on top.
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        system_prompt: optional system turn.
        dtype: ``auto`` (bfloat16 on CUDA when supported, else float32), ``float32``,
            ``bfloat16`` or ``float16``.
        device: ``cuda``, ``cpu``... (default: CUDA when available).
        batch_size: prompts per generation call (each expanded to k rows).
    """

    name_or_path: str
    revision: str | None = None
    adapter: str | None = None
    chat_template: bool = True
    system_prompt: str | None = None
    dtype: str = "auto"
    device: str | None = None
    batch_size: int = 16


def _dtype_name(name: str, device: str) -> str:
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    name = aliases.get(name, name)
    if name == "auto":
        import torch

        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bfloat16" if cuda_bf16 else "float32"
    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return name


def load_model(config: EvalModelConfig) -> tuple[Any, Any]:
    """Load the model and tokenizer through the project's loader (:mod:`infuser.models`, which
    also knows ``builtin:toy``), then the optional LoRA adapter; eval mode, on ``device``.

    Imports are local: scoring predictions never imports torch models.
    """
    import torch

    from infuser.model_config import ModelConfig
    from infuser.models import load_causal_lm, load_tokenizer

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_config = ModelConfig(
        name_or_path=config.name_or_path, revision=config.revision,
        dtype=_dtype_name(config.dtype, device),  # type: ignore[arg-type]
    )
    model = load_causal_lm(model_config)
    tokenizer = load_tokenizer(model_config)
    if config.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.adapter)
    model.to(device)
    model.eval()
    return model, tokenizer


def generate_outputs(
    model_config: EvalModelConfig, prompts: Sequence[str], sampling: EvalSamplingConfig, seed: int
) -> tuple[list[str], list[list[str]]]:
    """Render prompts and sample k completions each through the rollout engine.

    Returns:
        The rendered prompts and, per prompt, its k outputs.
    """
    import torch

    from infuser.rollout.engine import generate

    model, tokenizer = load_model(model_config)
    rendered = [
        render_prompt(p, tokenizer, model_config.chat_template, model_config.system_prompt) for p in prompts
    ]
    k = sampling.num_samples
    engine_sampling = sampling.engine(batch_size=max(1, model_config.batch_size * k))
    device = next(model.parameters()).device
    stream = torch.Generator(device=device)
    stream.manual_seed(seed)
    outputs: list[list[str]] = []
    step = max(1, model_config.batch_size)
    for start in range(0, len(rendered), step):
        chunk = rendered[start : start + step]
        batch = generate(model, tokenizer, chunk, engine_sampling, num_samples=k, stream=stream)
        texts = list(batch.texts)
        outputs.extend(texts[i * k : (i + 1) * k] for i in range(len(chunk)))
    return rendered, outputs
