"""Accuracy as torchmetrics ``Metric`` objects, for ``fit`` validation and multi-process runs.

The states are counts (correct, total, missed) reduced by *sum*, so the accuracy computed after
``sync`` is the accuracy over all processes' items, not an average of per-process accuracies
(which would be wrong whenever processes hold different numbers of items).

* :class:`Accuracy` takes already-judged booleans.
* :class:`GroupedAccuracy` keeps one count per group from a fixed list (difficulty, discipline,
  subset...) and reports per-group, micro and macro accuracy. The group list must be the same on
  every process, so it is given up front.
* :class:`BenchmarkAccuracy` takes raw generations plus the benchmark rows and judges them with
  :class:`infuser.eval.score.Scorer` inside ``update`` (the judge's worker processes are started
  lazily on each process and are not part of the metric state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from infuser.eval.data import OlympiadRow, SuperGPQARow
from infuser.eval.score import ItemScore, JudgeConfig, Scorer


def _as_bool_tensor(values: Tensor | Sequence[bool], name: str) -> Tensor:
    tensor = values if isinstance(values, Tensor) else torch.as_tensor(list(values), dtype=torch.bool)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor.to(torch.bool)


class Accuracy(Metric):
    """Fraction of correct items, with the miss rate alongside.

    ``update(correct, missed=None)``; ``compute()`` returns the accuracy (0 when no items) and
    :meth:`miss_rate` the fraction of items with no extractable answer.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    correct: Tensor
    total: Tensor
    missed: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("missed", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: Tensor | Sequence[bool], missed: Tensor | Sequence[bool] | None = None) -> None:
        hits = _as_bool_tensor(correct, "correct")
        self.correct += hits.sum().to(self.correct.device)
        self.total += torch.tensor(hits.numel(), device=self.total.device)
        if missed is not None:
            misses = _as_bool_tensor(missed, "missed")
            if misses.numel() != hits.numel():
                raise ValueError("correct and missed must have the same length")
            self.missed += misses.sum().to(self.missed.device)

    def compute(self) -> Tensor:
        if int(self.total) == 0:
            return torch.tensor(0.0)
        return self.correct.double() / self.total.double()

    def miss_rate(self) -> Tensor:
        """Fraction of items without an extractable answer (local state; call after ``sync``
        or ``compute`` in distributed runs)."""
        if int(self.total) == 0:
            return torch.tensor(0.0)
        return self.missed.double() / self.total.double()


class GroupedAccuracy(Metric):
    """Accuracy per group plus micro (all items) and macro (mean over non-empty groups) accuracy.

    Args:
        groups: every group name that may occur, in a fixed order (the same on every process).
        unknown: what to do with a label not in ``groups``: ``"error"`` or ``"ignore"``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    correct: Tensor
    total: Tensor

    def __init__(self, groups: Sequence[str], unknown: str = "error", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        names = list(dict.fromkeys(groups))
        if not names:
            raise ValueError("GroupedAccuracy needs at least one group")
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        self.groups = names
        self.unknown = unknown
        self._index = {name: i for i, name in enumerate(names)}
        self.add_state("correct", default=torch.zeros(len(names), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(len(names), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: Tensor | Sequence[bool], groups: Sequence[str]) -> None:
        hits = _as_bool_tensor(correct, "correct")
        if hits.numel() != len(groups):
            raise ValueError(f"{hits.numel()} results but {len(groups)} group labels")
        keep, index = [], []
        for i, name in enumerate(groups):
            position = self._index.get(name)
            if position is None:
                if self.unknown == "error":
                    raise KeyError(f"group {name!r} is not one of the {len(self.groups)} declared groups")
                continue
            keep.append(i)
            index.append(position)
        if not keep:
            return
        idx = torch.tensor(index, dtype=torch.long, device=self.total.device)
        self.total.index_add_(0, idx, torch.ones(len(index), dtype=torch.long, device=self.total.device))
        self.correct.index_add_(0, idx, hits[keep].long().to(self.correct.device))

    def compute(self) -> dict[str, Tensor]:
        total = self.total.double()
        per_group = torch.where(total > 0, self.correct.double() / total.clamp_min(1), torch.zeros_like(total))
        seen = total > 0
        out = {name: per_group[i] for i, name in enumerate(self.groups)}
        out["micro"] = (self.correct.sum().double() / total.sum()) if total.sum() > 0 else torch.tensor(0.0)
        out["macro"] = per_group[seen].mean() if bool(seen.any()) else torch.tensor(0.0)
        return out


class BenchmarkAccuracy(Accuracy):
    """Accuracy of raw generations on OlympiadBench or SuperGPQA rows, judged inside ``update``.

    ``update(outputs, rows)`` where ``rows`` are :class:`OlympiadRow` or :class:`SuperGPQARow`
    (one per output; repeat a row for several samples). The per-item scores of the last update
    are kept in :attr:`last_scores` for logging.
    """

    def __init__(self, judge: JudgeConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scorer = Scorer(judge)
        self.last_scores: list[ItemScore] = []

    def update(self, outputs: Sequence[str], rows: Sequence[OlympiadRow | SuperGPQARow]) -> None:  # type: ignore[override]
        if len(outputs) != len(rows):
            raise ValueError(f"{len(outputs)} outputs but {len(rows)} rows")
        if not rows:
            return
        if all(isinstance(r, OlympiadRow) for r in rows):
            scores = self.scorer.score_olympiad(outputs, [r.gold for r in rows])  # type: ignore[arg-type]
        elif all(isinstance(r, SuperGPQARow) for r in rows):
            scores = self.scorer.score_choice(outputs, rows)  # type: ignore[arg-type]
        else:
            raise TypeError("rows must all be OlympiadRow or all SuperGPQARow")
        self.last_scores = scores
        super().update([s.correct for s in scores], [s.missed for s in scores])

    def close(self) -> None:
        """Stop the judge workers (they restart on the next update)."""
        self.scorer.close()
