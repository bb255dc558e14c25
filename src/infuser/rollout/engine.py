"""Batched sampling with the KV cache, and the log-prob pass the RL update needs.

The sampler is a short explicit loop instead of ``model.generate``: it keeps the sampled tokens'
log-probs as it goes (no second scoring pass, no ``output_scores`` bookkeeping) and has no
per-step logits-processor machinery. Three things make it cheaper than sampling each row
independently:

* each distinct prompt is tokenised and prefilled once, and its KV cache is then shared by its
  ``num_samples`` rows (GRPO samples a group per prompt, so prefill work drops by the group size);
* rows that have emitted EOS are dropped from the batch (their cache rows too) once a quarter of
  the batch has finished, so short answers stop costing compute while long ones finish;
* the loop stops as soon as every row has finished.

Prompts are left-padded so every row's next token sits in the last column.

Sampling noise is counter-based: the token of sample ``j`` of prompt ``p`` at step ``t`` is
``argmax(log p + Gumbel(u))`` with ``u`` a hash of (call seed, ``prompt_offset + p``, ``j``, ``t``,
token id). A row's completion therefore depends on its own prompt and seed only, not on which
other rows share its batch, how the batch is chunked, or which finished rows were dropped. That
is what lets several processes each sample their shard of the prompts (``prompt_offset``) and
together draw exactly what one process would have drawn.

Under a strategy that shards the parameters (FSDP), a forward call may gather parameters from all
processes (a collective), so every process must make the same number of calls, whatever its rows.
With a :class:`Lockstep`, each call is preceded by a one-flag agreement, and a process that has
finished (or has no rows) keeps running a one-token forward until every process has.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from infuser.config import SamplingConfig
from infuser.rollout.rows import RolloutBatch, left_pad


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


def _cache_keyword(model: PreTrainedModel) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; accept models of either era."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sampling: SamplingConfig) -> set[int]:
    """Every token that ends a completion: the tokenizer's EOS, the model's, and configured ones."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    stops = {*configured, *sampling.stop_token_ids}
    if tokenizer.eos_token_id is not None:
        stops.add(tokenizer.eos_token_id)
    return stops


# Drop finished rows once this fraction of the live batch has finished: selecting the surviving
# cache rows costs about one decoding step, so it is worth it only when enough rows go.
_COMPACT_FRACTION = 0.25


@dataclass
class _Chunk:
    """The sampled part of one chunk of rows: completion tokens, log-probs, lengths, truncation."""

    tokens: Tensor
    logps: Tensor
    lengths: Tensor
    truncated: Tensor


class Lockstep(Protocol):
    """The agreement that keeps processes' forward calls in step (see the module docstring)."""

    def any(self, flag: bool) -> bool:
        """Whether any process passed ``True``; every process must call it, in the same order."""
        ...


class _SteppedForward:
    """``model``'s forward, each call in step with the other processes' calls."""

    def __init__(self, model: torch.nn.Module, lockstep: Lockstep | None, pad_id: int) -> None:
        self.model, self.lockstep, self.pad_id = model, lockstep, pad_id

    def __call__(self, **inputs: Any) -> Any:
        if self.lockstep is not None:
            self.lockstep.any(True)
        return self.model(**inputs)

    def finish(self) -> None:
        """Run idle one-token forwards for as long as another process still has real ones."""
        if self.lockstep is None:
            return
        device = next(self.model.parameters()).device
        idle = torch.full((1, 1), self.pad_id, dtype=torch.long, device=device)
        while self.lockstep.any(False):
            self.model(input_ids=idle, use_cache=False, logits_to_keep=1)


_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit constant as the signed integer torch's int64 arithmetic wraps around."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical (zero-filling) shift of int64 values; torch's ``>>`` on int64 is arithmetic."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors (multiplication wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def row_seeds(seed: int, prompt_index: Tensor, num_samples: int) -> Tensor:
    """One 64-bit stream per row, from the call seed, the row's global prompt index and sample number."""
    sample = torch.arange(len(prompt_index)) % num_samples
    return _mix64(_mix64(torch.full_like(prompt_index, _signed(seed))) ^ (prompt_index * num_samples + sample))


def _gumbel_noise(seeds: Tensor, step: int, vocab: int) -> Tensor:
    """Gumbel(0, 1) noise (rows x vocab) that is a pure function of each row's seed, the step and the token."""
    key = _mix64(seeds ^ _signed(step * 0x632BE59BD9B4E019))
    bits = _mix64(key.unsqueeze(-1) + torch.arange(vocab, device=seeds.device) * _GOLDEN)
    uniform = (_shift_right(bits, 11).double() + 0.5) * 2.0**-53  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(uniform)).float()


def call_seed(stream: torch.Generator | None) -> int:
    """The one draw a :func:`generate` call takes from ``stream``: every row's noise derives from it.

    A process whose shard of a batch is empty takes it too, so its stream stays in step with the
    streams of the processes that sample.
    """
    return int(torch.randint(0, 2**62, (1,), generator=stream))


@torch.no_grad()
def _sample_chunk(model: PreTrainedModel, forward: Callable[..., Any], prompt_ids: Tensor, prompt_mask: Tensor,
                  expand: Tensor, eos_ids: set[int], pad_id: int, sampling: SamplingConfig, seeds: Tensor) -> _Chunk:
    """Sample one completion per entry of ``expand`` (an index into the distinct ``prompt_ids``);
    ``seeds`` holds each entry's random stream (see :func:`row_seeds`). ``forward`` runs ``model``."""
    device = prompt_ids.device
    cache = DynamicCache(config=model.config)
    keyword = _cache_keyword(model)
    positions = (prompt_mask.cumsum(-1) - 1).clamp_min(0)
    out = forward(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                logits_to_keep=1, **{keyword: cache})
    cache.batch_select_indices(expand)  # share each prompt's prefill among its samples
    logits = out.logits[expand, -1, :].float()
    mask = prompt_mask[expand]
    next_position = positions[expand, -1:] + 1
    rows = expand.numel()
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    tokens = torch.full((rows, sampling.max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((rows, sampling.max_new_tokens), device=device)
    lengths = torch.full((rows,), sampling.max_new_tokens, dtype=torch.long, device=device)
    stopped = torch.zeros(rows, dtype=torch.bool, device=device)
    live = torch.arange(rows, device=device)  # chunk row of each row still in the batch
    done = torch.zeros(rows, dtype=torch.bool, device=device)  # finished, but not yet dropped
    for step in range(sampling.max_new_tokens):
        scaled = logits / sampling.temperature
        if sampling.do_sample:
            log_probs = _filter_logits(scaled, sampling.top_k, sampling.top_p).log_softmax(-1)
            token = (log_probs + _gumbel_noise(seeds[live], step, log_probs.size(-1))).argmax(-1)
        else:
            log_probs = scaled.log_softmax(-1)
            token = log_probs.argmax(-1)
        token = token.masked_fill(done, pad_id)
        tokens[live, step] = token
        logps[live, step] = log_probs.gather(-1, token.unsqueeze(-1)).squeeze(-1).masked_fill(done, 0.0)
        ended = ~done & torch.isin(token, eos)
        lengths[live[ended]] = step + 1
        stopped[live[ended]] = True
        done = done | ended
        if bool(done.all()) or step == sampling.max_new_tokens - 1:
            break
        if int(done.sum()) >= _COMPACT_FRACTION * done.numel():
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            live, token, mask, next_position = live[keep], token[keep], mask[keep], next_position[keep]
            done = done[keep]
        mask = torch.cat([mask, torch.ones((mask.size(0), 1), dtype=mask.dtype, device=device)], dim=-1)
        out = forward(input_ids=token.unsqueeze(-1), attention_mask=mask, position_ids=next_position, use_cache=True,
                    **{keyword: cache})
        logits = out.logits[:, -1, :].float()
        next_position = next_position + 1
    width = int(lengths.max())
    return _Chunk(tokens=tokens[:, :width], logps=logps[:, :width], lengths=lengths, truncated=~stopped)


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block (no dropout: sampling and scoring read the policy
    itself), then back in the mode it was in, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    sampling: SamplingConfig,
    num_samples: int = 1,
    stream: torch.Generator | None = None,
    prompt_offset: int = 0,
    lockstep: Lockstep | None = None,
) -> RolloutBatch:
    """Sample ``num_samples`` completions for every prompt; rows are prompt-major.

    One seed is drawn from the random ``stream`` (torch's global one when ``None``) per call; with
    ``prompt_offset`` the prompts count as those at positions ``prompt_offset, ...`` of a larger
    batch, so a process sampling a shard draws what one process sampling the whole batch would.
    With ``lockstep`` (sharded parameters), every process's forward calls stay in step, and
    ``prompts`` may be empty: the process then only keeps the others company (no rows).
    """
    if not prompts and lockstep is None:
        raise ValueError("generate() needs at least one prompt")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    forward = _SteppedForward(model, lockstep, pad_id)
    if not prompts:
        call_seed(stream)
        forward.finish()
        return RolloutBatch.placeholder(0, pad_id, device)
    eos_ids = _stop_ids(model, tokenizer, sampling)
    prompt_ids, prompt_mask = left_pad(tokenizer(prompts, add_special_tokens=False)["input_ids"], pad_id, device)
    prompt_index = torch.arange(len(prompts)).repeat_interleave(num_samples)
    seed = call_seed(stream)
    seeds = row_seeds(seed, prompt_index + prompt_offset, num_samples).to(device)
    parts = []
    with evaluating(model):
        for start in range(0, len(prompt_index), sampling.batch_size):
            chunk = prompt_index[start : start + sampling.batch_size].to(device)
            distinct, expand = torch.unique_consecutive(chunk, return_inverse=True)
            ids, mask = prompt_ids[distinct], prompt_mask[distinct]
            trim = int((mask == 0).all(0).sum())  # columns of padding shared by the whole chunk
            parts.append(_sample_chunk(model, forward, ids[:, trim:], mask[:, trim:], expand, eos_ids, pad_id,
                                       sampling, seeds[start : start + sampling.batch_size]))
        forward.finish()
    width = max(part.tokens.size(1) for part in parts)
    completion_ids = torch.cat([F.pad(part.tokens, (0, width - part.tokens.size(1)), value=pad_id) for part in parts])
    sampling_logps = torch.cat([F.pad(part.logps, (0, width - part.logps.size(1))) for part in parts])
    lengths = torch.cat([part.lengths for part in parts])
    completion_mask = (torch.arange(width, device=device) < lengths.unsqueeze(-1)).long()
    texts = tokenizer.batch_decode([ids[:n] for ids, n in zip(completion_ids.tolist(), lengths.tolist())],
                                   skip_special_tokens=True)
    rows = prompt_index.to(device)
    return RolloutBatch(
        prompt_ids=prompt_ids[rows], prompt_mask=prompt_mask[rows],
        completion_ids=completion_ids, completion_mask=completion_mask, sampling_logps=sampling_logps,
        truncated=torch.cat([part.truncated for part in parts]).cpu(), prompt_index=prompt_index, texts=texts,
    )


def completion_logps(
    model: torch.nn.Module, batch: RolloutBatch, temperature: float = 1.0, with_entropy: bool = False,
    entropy_grad: bool = False, share_prompts: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs (and optionally entropies) of the completion tokens under ``model``.

    Logits are divided by the sampling temperature, as the sampler did, so ratios against
    ``sampling_logps`` are 1 for an unchanged model. Only the completion positions are projected
    onto the vocabulary: the prompt's logits are never materialised.

    With ``share_prompts``, rows with the same prompt (same ids and mask) share one forward
    pass of it: the distinct prompts are run once, their KV cache is indexed out to the
    rows, and only the completions are run on top. Autograd flows through the shared cache, so
    log-probs and gradients are those of running every row in full, for a fraction of the prompt
    work (a GRPO group of ``n`` samples pays for its prompt once, not ``n`` times). It needs the
    KV cache in the forward pass, which gradient checkpointing switches off: pass ``False`` then.

    The entropy is differentiable only with ``entropy_grad`` (an entropy bonus); as a metric it
    is computed outside the graph, so it holds no vocabulary-sized activation for the backward.
    """
    distinct, expand = torch.unique(torch.cat([batch.prompt_ids, batch.prompt_mask], dim=1), dim=0,
                                    return_inverse=True)
    if share_prompts and len(distinct) < len(batch):
        logits = _shared_prompt_logits(model, batch, expand)
    else:
        input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
        attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                       logits_to_keep=batch.completion_ids.size(1) + 1, use_cache=False).logits[:, :-1, :]
    logits = logits.float() / temperature
    log_norm = logits.logsumexp(-1)
    logps = logits.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1) - log_norm
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            # H = log Z - E_p[logit]: one softmax, no second vocabulary-sized log-prob tensor
            entropy = log_norm - (logits.softmax(-1) * logits).sum(-1)
    return logps, entropy


def _shared_prompt_logits(model: torch.nn.Module, batch: RolloutBatch, expand: Tensor) -> Tensor:
    """Next-token logits at every completion position, each distinct prompt run once (B x T x V)."""
    # one row per distinct prompt; any of its rows will do, they are identical
    first = torch.empty(int(expand.max()) + 1, dtype=torch.long, device=expand.device)
    first.scatter_(0, expand, torch.arange(len(expand), device=expand.device))
    prompt_mask = batch.prompt_mask[first]
    positions = (prompt_mask.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache(config=model.config)
    keyword = _cache_keyword(model)
    head = model(input_ids=batch.prompt_ids[first], attention_mask=prompt_mask, position_ids=positions,
                 use_cache=True, logits_to_keep=1, **{keyword: cache}).logits[expand]
    cache.batch_select_indices(expand)
    attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
    completion_positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)[:, batch.prompt_ids.size(1) :]
    tail = model(input_ids=batch.completion_ids, attention_mask=attention_mask, position_ids=completion_positions,
                 use_cache=True, **{keyword: cache}).logits
    return torch.cat([head, tail[:, :-1, :]], dim=1)
