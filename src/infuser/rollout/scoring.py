"""Exact evaluation: a model's probability of writing a given completion, teacher-forced.

Sampled accuracy (avg@k) of a small question set carries a standard error of a few points, which
is as large as the differences a curriculum benchmark looks for. Where every question has a known
canonical answer (the toy worlds: :meth:`ToyQuestions.canonical_completion`), the probability
that the Solver writes exactly that answer is computed instead, in one forward pass per batch
and without sampling noise: the mean over questions is a deterministic accuracy figure.

It is the probability that a sample *is* the canonical token sequence, end-of-text included,
under the sampling distribution at ``temperature`` (no top-k/top-p truncation). The end-of-text
counts because a sample that writes the canonical answer and then goes on is not that answer (it
may box a second one). A completion that reaches the right option another way (other tokens or
other steps) is not counted, so it is a lower bound of the expected pass rate; for a model taught
to write the canonical answer when it is right, as the toy bases are, the two agree closely.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from infuser.rollout.engine import completion_logps, evaluating
from infuser.rollout.rows import RolloutBatch, UnpaddedRow


def exact_probabilities(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                        completions: list[str], temperature: float = 1.0, batch_size: int = 64,
                        end_token_id: int | None = None) -> Tensor:
    """``P(completion_i + end-of-text | prompt_i)`` for every ``i`` (float64 on the CPU), each token's
    softmax at ``temperature``; ``end_token_id`` replaces end-of-text (a chat template's end-of-turn).

    Rows (:func:`teacher_forced_batch`) run ``batch_size`` at a time,
    prompts left-padded and completions right-padded; padding is masked out, so a row's
    probability does not depend on its batch. The model is put in eval mode for the call and
    restored after.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"exact_probabilities: {len(prompts)} prompts but {len(completions)} completions")
    if temperature <= 0 or batch_size < 1:
        raise ValueError("exact_probabilities: temperature must be > 0 and batch_size >= 1")
    device = next(model.parameters()).device
    log_probabilities = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = teacher_forced_batch(tokenizer, prompts[start : start + batch_size],
                                         completions[start : start + batch_size], device, end_token_id=end_token_id)
            logps, _ = completion_logps(model, batch, temperature, share_prompts=False)
            log_probabilities.append((logps.double() * batch.completion_mask).sum(-1).cpu())
    return torch.cat(log_probabilities).exp() if log_probabilities else torch.zeros(0, dtype=torch.float64)


def teacher_forced_batch(tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str],
                         device: torch.device, num_samples: int = 1, end_token_id: int | None = None) -> RolloutBatch:
    """The rows ``prompt`` -> ``completion`` + end-of-text (or ``end_token_id``: a chat template's
    end-of-turn) as a :class:`RolloutBatch` (``num_samples``
    completions per prompt, prompt-major), so that the training loss's own log-prob pass scores
    them. Prompt and completion are tokenised apart, as the sampler sees them; the sampling
    log-probs are 0, since no policy sampled these rows (exact evaluation's canonical answers, a
    scripted arm's drafts)."""
    end = tokenizer.eos_token_id if end_token_id is None else end_token_id
    if end is None:
        raise ValueError("teacher_forced_batch: the tokenizer has no end-of-text token to end a completion with")
    if len(completions) != len(prompts) * num_samples:
        raise ValueError(f"teacher_forced_batch: {len(prompts)} prompts x {num_samples} need as many completions, "
                         f"got {len(completions)}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    if any(not ids for ids in completion_ids):
        raise ValueError("teacher_forced_batch: an empty completion has no tokens to score")
    rows = []
    for row, (completion, text) in enumerate(zip(completion_ids, completions, strict=True)):
        completion = completion + [end]
        rows.append(UnpaddedRow(prompt_ids=torch.tensor(prompt_ids[row // num_samples]),
                                completion_ids=torch.tensor(completion), sampling_logps=torch.zeros(len(completion)),
                                truncated=False, prompt_index=row // num_samples, text=text))
    return RolloutBatch.of_rows(rows, pad_id, device)
