"""Batched sampling with the KV cache, and the log-prob pass the RL update needs.

The sampler is a short explicit loop instead of ``model.generate``: it keeps the sampled tokens'
log-probs as it goes (no second scoring pass, no ``output_scores`` bookkeeping), stops as soon as
every row has emitted EOS, and has no per-step logits-processor machinery. Prompts are left-padded
so every row's next token sits in the last column.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase


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
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    do_sample: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("top_k must be >= 0; max_new_tokens and batch_size >= 1")


@dataclass
class RolloutBatch:
    """Token-level record of sampled completions, ordered prompt-major.

    Row ``i`` answers prompt ``prompt_index[i]``; the ``num_samples`` rows of one prompt are
    contiguous. Prompts are left-padded, completions right-padded.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor  # 1 for completion tokens up to and including EOS
    sampling_logps: Tensor  # log-prob of each sampled token under the sampling distribution
    truncated: Tensor  # bool per row: no EOS within max_new_tokens
    prompt_index: Tensor
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: Tensor | list[int]) -> RolloutBatch:
        """A sub-batch of the given rows (same order), trimmed to its own longest completion."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        completion_mask = self.completion_mask[rows]
        width = max(int(completion_mask.sum(-1).max().item()) if len(rows) else 0, 1)
        prompt_mask = self.prompt_mask[rows]
        pad = int((prompt_mask.sum(-1) == 0).all()) if len(rows) == 0 else int((prompt_mask == 0).all(0).sum())
        return RolloutBatch(
            prompt_ids=self.prompt_ids[rows][:, pad:],
            prompt_mask=prompt_mask[:, pad:],
            completion_ids=self.completion_ids[rows][:, :width],
            completion_mask=completion_mask[:, :width],
            sampling_logps=self.sampling_logps[rows][:, :width],
            truncated=self.truncated[rows],
            prompt_index=self.prompt_index[rows],
            texts=[self.texts[i] for i in rows.tolist()],
        )


def _filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _left_pad(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, tokens in enumerate(encoded):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
    return ids.to(device), mask.to(device)


def _cache_keyword(model: PreTrainedModel) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; accept models of either era."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def _sample_chunk(model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, eos_ids: set[int], pad_id: int,
                  sampling: SamplingConfig, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    rows = prompt_ids.size(0)
    device = prompt_ids.device
    cache = {_cache_keyword(model): DynamicCache()}
    mask = prompt_mask
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **cache)
    logits = out.logits[:, -1, :].float()
    next_position = positions[:, -1:] + 1
    eos = torch.tensor(sorted(eos_ids), device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    tokens, logps, alive = [], [], []
    for step in range(sampling.max_new_tokens):
        scaled = logits / sampling.temperature
        if sampling.do_sample:
            filtered = _filter_logits(scaled, sampling.top_k, sampling.top_p)
            log_probs = filtered.log_softmax(-1)
            token = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
        else:
            log_probs = scaled.log_softmax(-1)
            token = log_probs.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        alive.append(~finished)
        tokens.append(token)
        logps.append(log_probs.gather(-1, token.unsqueeze(-1)).squeeze(-1).masked_fill(finished, 0.0))
        finished = finished | torch.isin(token, eos)
        if bool(finished.all()) or step == sampling.max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=-1)
        out = model(input_ids=token.unsqueeze(-1), attention_mask=mask, position_ids=next_position, use_cache=True,
                    **cache)
        logits = out.logits[:, -1, :].float()
        next_position = next_position + 1
    completion_ids = torch.stack(tokens, dim=1)
    completion_mask = torch.stack(alive, dim=1).long()
    return completion_ids, completion_mask, torch.stack(logps, dim=1), ~finished


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    sampling: SamplingConfig,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> RolloutBatch:
    """Sample ``num_samples`` completions for every prompt; rows are prompt-major."""
    if not prompts:
        raise ValueError("generate() needs at least one prompt")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    was_training = model.training
    model.eval()
    expanded = [p for p in prompts for _ in range(num_samples)]
    prompt_index = torch.arange(len(prompts)).repeat_interleave(num_samples)
    prompt_ids, prompt_mask = _left_pad(tokenizer, expanded, device)
    parts = []
    for start in range(0, len(expanded), sampling.batch_size):
        chunk = slice(start, start + sampling.batch_size)
        ids, mask = prompt_ids[chunk], prompt_mask[chunk]
        trim = int((mask == 0).all(0).sum())  # columns of padding shared by the whole chunk
        parts.append(_sample_chunk(model, ids[:, trim:], mask[:, trim:], eos_ids, pad_id, sampling, generator))
    model.train(was_training)
    width = max(p[0].size(1) for p in parts)

    def cat(index: int, fill: float | int | bool) -> Tensor:
        return torch.cat([F.pad(p[index], (0, width - p[index].size(1)), value=fill) for p in parts], dim=0)

    completion_ids, completion_mask = cat(0, pad_id), cat(1, 0)
    sampling_logps = torch.cat([F.pad(p[2], (0, width - p[2].size(1)), value=0.0) for p in parts], dim=0)
    truncated = torch.cat([p[3] for p in parts], dim=0)
    texts = tokenizer.batch_decode((completion_ids * completion_mask).tolist(), skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
        completion_mask=completion_mask, sampling_logps=sampling_logps, truncated=truncated.cpu(),
        prompt_index=prompt_index, texts=texts,
    )


def completion_logps(
    model: torch.nn.Module, batch: RolloutBatch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Log-probs (and optionally entropies) of the completion tokens under ``model``.

    Logits are divided by the sampling temperature, as the sampler did, so ratios against
    ``sampling_logps`` are 1 for an unchanged model.
    """
    input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
    attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
    positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    prompt_width = batch.prompt_ids.size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
    logits = logits[:, prompt_width - 1 : -1, :].float() / temperature
    log_probs = logits.log_softmax(-1)
    logps = log_probs.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
    return logps, entropy
