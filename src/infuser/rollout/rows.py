"""Rows of sampled completions, from the sampler to the loss: the one home of every row type.

One batch of completions travels through an iteration in these shapes, each wrapping the last:

* :class:`RolloutBatch`: the token-level record one process sampled (ids, masks, sampling
  log-probs, truncation flags, texts), prompt-major;
* :class:`SplitRollouts`: a batch sampled across processes: this process's ``RolloutBatch`` plus
  what every process needs to know of every row (texts, lengths, truncation flags);
* :class:`Drafts` and :class:`Answers`: the Generator's and the Solver's ``SplitRollouts`` with what
  each role made of its rows (parsed questions; 0/1 rewards);
* :class:`ScoredRollouts`: rows with one advantage each, the input of a policy-gradient loss (an
  update's micro-batch, the target set, one influence candidate), optionally with the
  :class:`BatchTotals` of the larger batch they are a share of (the loss's normalisers).

Rows are prompt-major throughout: the ``num_samples`` completions of a prompt are contiguous, so
"the answers to question q" or "the drafts of document d" is a slice, and a prompt's rows are never
split across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from infuser.data.documents import Document
from infuser.data.questions import InvalidQuestion, Question

if TYPE_CHECKING:
    from infuser.distributed import Processes


@dataclass(frozen=True)
class BatchTotals:
    """Sizes of the whole mini-batch that micro-batch losses are normalised by.

    Attributes:
        sequences: rows of the mini-batch on this process (rows without loss tokens included).
        tokens: loss tokens of the mini-batch on this process.
        max_completion_length: the ``dr_grpo`` constant.
        tokens_per_process: loss tokens of the mini-batch summed over processes, divided by the
            number of processes: ``dapo``'s (and the entropy bonus's) normaliser, so that averaging
            gradients across processes yields the global token-mean. ``None`` on one process
            (= ``tokens``).
        sequences_per_process: rows of the mini-batch summed over processes, divided by the
            number of processes: the ``grpo`` and ``dr_grpo`` normaliser, for the same reason
            (processes may hold different numbers of rows). ``None`` on one process
            (= ``sequences``).
    """

    sequences: int
    tokens: int
    max_completion_length: int
    tokens_per_process: float | None = None
    sequences_per_process: float | None = None


@dataclass(frozen=True)
class UnpaddedRow:
    """One row of a :class:`RolloutBatch` without padding: its prompt and completion tokens only."""

    prompt_ids: Tensor
    completion_ids: Tensor
    sampling_logps: Tensor
    truncated: bool
    prompt_index: int
    text: str


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

    @classmethod
    def placeholder(cls, rows: int, pad_id: int, device: torch.device) -> RolloutBatch:
        """``rows`` rows of a one-token prompt and a one-token completion outside the loss mask: a
        process's empty share of a batch (0 rows), or a micro-batch that runs the model without
        adding to a loss or its gradient (1 row), so that a process with fewer rows makes as many
        forward calls as the others."""
        ids = torch.full((rows, 1), pad_id, dtype=torch.long, device=device)
        return cls(prompt_ids=ids, prompt_mask=torch.ones_like(ids), completion_ids=ids.clone(),
                   completion_mask=torch.zeros_like(ids), sampling_logps=torch.zeros(rows, 1, device=device),
                   truncated=torch.zeros(rows, dtype=torch.bool), prompt_index=torch.zeros(rows, dtype=torch.long),
                   texts=[""] * rows)

    def unpadded_rows(self) -> list[UnpaddedRow]:
        """Every row without its padding, on the CPU: what travels between processes."""
        prompt_mask, completion_mask = self.prompt_mask.bool().cpu(), self.completion_mask.bool().cpu()
        prompt_ids, completion_ids = self.prompt_ids.cpu(), self.completion_ids.cpu()
        logps = self.sampling_logps.cpu()
        return [UnpaddedRow(prompt_ids=prompt_ids[row][prompt_mask[row]],
                            completion_ids=completion_ids[row][completion_mask[row]],
                            sampling_logps=logps[row][completion_mask[row]], truncated=bool(self.truncated[row]),
                            prompt_index=int(self.prompt_index[row]), text=self.texts[row])
                for row in range(len(self))]

    @classmethod
    def of_rows(cls, rows: list[UnpaddedRow], pad_id: int, device: torch.device) -> RolloutBatch:
        """The batch of ``rows`` (:meth:`unpadded_rows`), padded again: prompts left, completions right."""
        prompt_ids, prompt_mask = left_pad([row.prompt_ids.tolist() for row in rows], pad_id, device)
        width = max(len(row.completion_ids) for row in rows)
        completion_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
        sampling_logps = torch.zeros((len(rows), width))
        for index, row in enumerate(rows):
            length = len(row.completion_ids)
            completion_ids[index, :length], completion_mask[index, :length] = row.completion_ids, 1
            sampling_logps[index, :length] = row.sampling_logps
        return cls(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids.to(device),
                   completion_mask=completion_mask.to(device), sampling_logps=sampling_logps.to(device),
                   truncated=torch.tensor([row.truncated for row in rows], dtype=torch.bool),
                   prompt_index=torch.tensor([row.prompt_index for row in rows], dtype=torch.long),
                   texts=[row.text for row in rows])

    def joined(self, other: RolloutBatch, pad_id: int) -> RolloutBatch:
        """This batch's rows, then ``other``'s, padded again; ``other``'s prompt indices are moved
        past this batch's, so the two never share a prompt index."""
        if not len(other):
            return self
        offset = int(self.prompt_index.max()) + 1 if len(self) else 0
        rows = self.unpadded_rows() + [replace(row, prompt_index=row.prompt_index + offset)
                                       for row in other.unpadded_rows()]
        return RolloutBatch.of_rows(rows, pad_id, self.completion_ids.device)

    def select(self, rows: Tensor | list[int]) -> RolloutBatch:
        """A sub-batch of the given rows (same order), trimmed to its own longest completion."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()  # CPU indices index tensors on any device
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


def left_pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Token lists padded on the left to one width, with their attention mask."""
    width = max(len(tokens) for tokens in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
    return ids.to(device), mask.to(device)



@dataclass(frozen=True)
class CompletionStats:
    """Completion-length metrics of a batch, under TRL's names (``completions/...``).

    Attributes:
        mean_length, min_length, max_length: completion tokens per row (EOS included).
        clipped_ratio: fraction of rows that hit ``max_new_tokens`` without stopping.
        mean_terminated_length: mean length of the rows that stopped (0 when none did).
    """

    mean_length: float
    min_length: float
    max_length: float
    clipped_ratio: float
    mean_terminated_length: float

    @classmethod
    def of(cls, batch: RolloutBatch) -> CompletionStats:
        return cls.of_lengths(batch.completion_mask.sum(-1), batch.truncated)

    @classmethod
    def of_lengths(cls, lengths: Tensor, truncated: Tensor) -> CompletionStats:
        """From each row's completion length and truncation flag (rows gathered from several processes)."""
        lengths, truncated = lengths.float().cpu(), truncated.bool().cpu()
        terminated = lengths[~truncated]
        return cls(mean_length=float(lengths.mean()), min_length=float(lengths.min()),
                   max_length=float(lengths.max()), clipped_ratio=float(truncated.float().mean()),
                   mean_terminated_length=float(terminated.mean()) if terminated.numel() else 0.0)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/completions/{name}": value for name, value in asdict(self).items()}


@dataclass
class SplitRollouts:
    """Completions of a batch of prompts, ``num_samples`` per prompt (prompt-major), split across
    processes by prompt, so a prompt's group of completions is never split.

    ``batch`` holds the tensors of this process's shard; what every process needs to know of every
    row (its text, length and truncation flag) is gathered, in the global row order.

    Attributes:
        batch: this process's rows: the completions of the prompts in ``prompts``.
        prompts: the (global) prompt indices this process sampled.
        num_samples: completions per prompt.
        texts: every row's completion text.
        lengths: every row's completion tokens (EOS included).
        truncated: every row's truncation flag.
    """

    batch: RolloutBatch
    prompts: range
    num_samples: int
    texts: list[str]
    lengths: Tensor
    truncated: Tensor

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def rows(self) -> range:
        """The global rows this process holds: ``batch``'s rows, in order."""
        return range(self.prompts.start * self.num_samples, self.prompts.stop * self.num_samples)

    @property
    def groups(self) -> Tensor:
        """Every row's prompt index: the advantage groups."""
        return torch.arange(len(self) // self.num_samples).repeat_interleave(self.num_samples)

    def scored(self, rows: Sequence[int], advantages: Tensor) -> ScoredRollouts:
        """This process's share of the global ``rows``, with their entries of the global ``advantages``."""
        held = [row for row in rows if row in self.rows]
        return ScoredRollouts(self.batch.select([row - self.rows.start for row in held]), advantages[held])

    def gathered(self, processes: Processes, rows: Sequence[int], pad_id: int, device: torch.device) -> RolloutBatch:
        """The global ``rows`` (ascending), whichever process holds them, on every process: row ``i``
        of the result is ``rows[i]`` (for influence under sharded parameters, where every process
        differentiates a share of each candidate's rows)."""
        held = [row - self.rows.start for row in rows if row in self.rows]
        return RolloutBatch.of_rows(processes.gather(self.batch.select(held).unpadded_rows()), pad_id, device)

    def completion_stats(self) -> CompletionStats:
        """Completion-length metrics of every row."""
        return CompletionStats.of_lengths(self.lengths, self.truncated)


@dataclass
class ScoredRollouts:
    """Rollouts with one advantage per row: the input of a policy-gradient loss.

    As a candidate: the Solver's answers to one question (a contiguous group of rows).

    ``totals``: what the loss of these rows is normalised by. ``None``: these rows alone. Set
    when they are this process's share of a batch split across processes (the target set): the
    totals of the whole batch, so the shares' gradients sum to the whole batch's gradient.
    """

    batch: RolloutBatch
    advantages: Tensor
    totals: BatchTotals | None = None


@dataclass
class Answers:
    """``n`` answers per question, prompt-major, with their 0/1 rewards.

    Split across processes by question (a question's answers are never split): ``rollouts.batch``
    holds this process's rows; texts, ``choices`` and ``rewards`` cover every row of every process,
    so pass rates are the same everywhere.
    """

    questions: list[Question]
    rollouts: SplitRollouts
    rewards: Tensor  # float, one per row of every process
    choices: list[str]  # each row's graded answer (an option letter, a run status; "" for none), one per row of every process

    def graded_against(self, labels: Sequence[str]) -> Answers:
        """The same answers rewarded 1 where a row picks its question's entry of ``labels`` (one
        letter per question; "" matches no row) instead of the golden answer."""
        n = self.rollouts.num_samples
        rewards = torch.tensor([float(bool(labels[row // n]) and choice == labels[row // n])
                                for row, choice in enumerate(self.choices)])
        return replace(self, rewards=rewards)

    @property
    def batch(self) -> RolloutBatch:
        """This process's rows (every row, on one process)."""
        return self.rollouts.batch

    def pass_rates(self) -> Tensor:
        """Fraction correct per question."""
        return self.rewards.view(len(self.questions), self.rollouts.num_samples).mean(-1) if self.questions \
            else torch.zeros(0)

    def rows_of(self, question_index: int) -> list[int]:
        """The (global) rows of one question's answers."""
        n = self.rollouts.num_samples
        return list(range(question_index * n, (question_index + 1) * n))

    def candidates(self, questions: Sequence[int], advantages: Tensor, processes: Processes,
                   totals: Callable[[RolloutBatch], BatchTotals], pad_id: int) -> list[ScoredRollouts]:
        """What this process differentiates for the influence of each of ``questions`` (in their order),
        with the global ``advantages`` of every row.

        Data parallel: the questions this process answered, whole (the scores are gathered
        afterwards). Sharded parameters: every backward is a collective that reduces the processes'
        gradients, so every process takes a share of every question's answers (gathered first),
        normalised by the question's totals (``totals`` of a share: the whole's, see
        :meth:`~infuser.roles.policy.PolicyRole.shared_totals`), and every process ends with every score.
        """
        if not processes.shards_parameters:
            return [self.rollouts.scored(self.rows_of(q), advantages) for q in questions if q in self.rollouts.prompts]
        wanted = [row for question in questions for row in self.rows_of(question)]
        batch = self.rollouts.gathered(processes, wanted, pad_id, self.batch.completion_ids.device)
        candidates = []
        for index, question in enumerate(questions):
            rows = self.rows_of(question)
            share = processes.shard(len(rows))
            position = index * len(rows)  # the question's rows in ``batch``
            piece = batch.select(list(range(position + share.start, position + share.stop)))
            candidates.append(ScoredRollouts(piece, advantages[[rows[i] for i in share]], totals(piece)))
        return candidates


@dataclass
class Drafts:
    """The Generator's rollouts for a batch of documents (``k`` rows per document, contiguous).

    ``parsed[i]`` is row ``i``'s question (options shuffled) or the reason it is invalid. Split
    across processes by document (a document's drafts are never split): ``rollouts.batch`` holds
    this process's rows; texts and ``parsed`` cover every row of every process.
    """

    documents: list[Document]
    rollouts: SplitRollouts
    parsed: list[Question | InvalidQuestion]

    @property
    def batch(self) -> RolloutBatch:
        """This process's rows (every row, on one process)."""
        return self.rollouts.batch

    @property
    def valid_rows(self) -> list[int]:
        return [i for i, item in enumerate(self.parsed) if not isinstance(item, InvalidQuestion)]
