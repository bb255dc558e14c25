"""How a role samples: the settings the rollout engine (:mod:`infuser.rollout.engine`) takes.

A module of its own, free of torch, so that configuration code (``infuser eval``'s sampling
settings among it) can build and validate these settings without importing a model stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    """How a role samples.

    Attributes:
        temperature: softmax temperature; also applied when scoring tokens for the update.
        top_p: nucleus sampling mass (1.0 disables).
        top_k: keep only the k most likely tokens (0 disables).
        max_new_tokens: completion budget; rows without EOS by then are marked truncated.
        do_sample: ``False`` decodes greedily (evaluation).
        batch_size: rows per forward pass (prompts x samples); bounds memory.
        stop_token_ids: token ids that end a completion besides the tokenizer's EOS and the
            model's ``generation_config.eos_token_id`` (e.g. a chat model's end-of-turn token).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    do_sample: bool = True
    batch_size: int = 256
    stop_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("top_k must be >= 0; max_new_tokens and batch_size >= 1")
