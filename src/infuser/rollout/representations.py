"""What a model's last layer makes of a prompt: one vector per prompt, for rewards that compare
questions by representation rather than by gradient (``representation_similarity``).

A prompt's vector is the mean over its tokens of the last layer's hidden states (the input of the
language-model head), computed without gradients in eval mode. Prompts are right-padded and the
padding is masked out of the mean: with causal attention a real token never attends to the
padding after it, and its position is its place in its own prompt, so a prompt's vector does not
depend on its batch.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from infuser.rollout.engine import evaluating


def prompt_representations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                           batch_size: int = 64) -> Tensor:
    """The mean-pooled last-layer hidden state of every prompt: ``(len(prompts), hidden)`` float32
    on the CPU. The model is put in eval mode for the call and restored after."""
    if batch_size < 1:
        raise ValueError("prompt_representations: batch_size must be at least 1")
    if not prompts:
        raise ValueError("prompt_representations: no prompts")
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    if any(not tokens for tokens in ids):
        raise ValueError("prompt_representations: an empty prompt has no tokens to represent")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    pooled = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(ids), batch_size):
            rows = ids[start : start + batch_size]
            width = max(len(tokens) for tokens in rows)
            input_ids = torch.tensor([tokens + [pad_id] * (width - len(tokens)) for tokens in rows], device=device)
            mask = torch.tensor([[1] * len(tokens) + [0] * (width - len(tokens)) for tokens in rows], device=device)
            hidden = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled.append(((hidden * weights).sum(1) / weights.sum(1)).float().cpu())
    return torch.cat(pooled)
