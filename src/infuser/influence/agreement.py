"""How far two sets of influence scores agree: the comparisons behind ``shadow_influence`` (other
estimators scoring the loop's own questions beside the one that rewards the Generator) and the
fidelity benchmark's rank correlations.

Two agreements, because they answer different questions. Spearman's rank correlation over all
scored questions says whether the estimators order the questions alike. The Generator, though,
is only ever compared within a document: DuGRPO normalises each document's drafts among
themselves, so what changes its update is which draft of a document scores highest. The top-choice
agreement counts the documents whose best-scored draft both estimators name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def ranks(values: Tensor) -> Tensor:
    """0-based ranks, ties sharing the mean of the ranks they span."""
    order = values.argsort()
    ranked = torch.empty_like(values)
    ranked[order] = torch.arange(len(values), dtype=values.dtype)
    for value in values.unique():
        tied = values == value
        if int(tied.sum()) > 1:
            ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = ranks(x.double()), ranks(y.double())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float(rx.dot(ry)) / denominator if denominator > 0 else float("nan")


def top_choice_agreement(x: Tensor, y: Tensor, groups: Sequence[int]) -> float:
    """Of the groups with at least two scores, the share whose highest score sits at the same
    position under ``x`` and ``y`` (ties: the first). NaN when no group has two scores.

    ``groups[i]`` names the group of score ``i`` (the document a question was drafted from).
    """
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    compared = [torch.tensor(indices) for indices in members.values() if len(indices) > 1]
    if not compared:
        return float("nan")
    same = [int(x[indices].argmax()) == int(y[indices].argmax()) for indices in compared]
    return sum(same) / len(same)
