"""INFUSER + target (``loop.target_mix``): the target set's answers join the Solver's update."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from infuser.cli import main
from infuser.config import LoopConfig
from infuser.rollout.rows import RolloutBatch, UnpaddedRow

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("settings, message", [
    ({"target_mix": -0.5}, "loop.target_mix must be a finite weight >= 0"),
    ({"target_mix": math.nan}, "loop.target_mix must be a finite weight >= 0"),
    ({"target_mix": 1.0, "solver_data": "target"}, "loop.target_mix: with loop.solver_data: target"),
])
def test_bad_mixes_are_refused_by_key(settings, message):
    with pytest.raises(ValueError, match=message):
        LoopConfig(**settings)


def _row(prompt: list[int], completion: list[int], index: int) -> UnpaddedRow:
    return UnpaddedRow(prompt_ids=torch.tensor(prompt), completion_ids=torch.tensor(completion),
                       sampling_logps=-torch.arange(1.0, len(completion) + 1), truncated=False, prompt_index=index,
                       text=f"{prompt}->{completion}")


def test_joined_batches_keep_rows_and_separate_prompts():
    first = RolloutBatch.of_rows([_row([1, 2], [3], 0), _row([1, 2], [4, 5], 0), _row([6], [7], 1)], 0,
                                 torch.device("cpu"))
    second = RolloutBatch.of_rows([_row([8, 9, 10], [11, 12, 13], 0)], 0, torch.device("cpu"))
    joined = first.joined(second, pad_id=0)
    assert joined.texts == first.texts + second.texts
    assert joined.prompt_index.tolist() == [0, 0, 1, 2]  # the second batch's prompt 0 follows the first's
    rows = joined.unpadded_rows()
    for got, want in zip(rows, first.unpadded_rows() + second.unpadded_rows()):
        assert got.prompt_ids.tolist() == want.prompt_ids.tolist()
        assert got.completion_ids.tolist() == want.completion_ids.tolist()
        assert got.sampling_logps.tolist() == want.sampling_logps.tolist()
    empty = first.select([])
    assert first.joined(empty, pad_id=0) is first
    assert empty.joined(second, pad_id=0).prompt_index.tolist() == [0]


def _solver_metrics(run_dir: Path) -> dict[str, str]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        return {key: value for row in csv.DictReader(handle) if row["step"] == "1"
                for key, value in row.items() if key.startswith("solver/") and value != ""}


@pytest.mark.slow
def test_the_solver_trains_on_target_rows_without_valid_drafts(tiny_model_dir, tmp_path):
    """The tiny test model drafts no valid question: alone, the Solver's update is skipped; with a
    target mix it trains on the target set's rows with signal (whole groups of 2 answers)."""
    common = ["fit", "--config", str(REPO / "configs" / "toy.yaml"),
              f"--generator.model.name_or_path={tiny_model_dir}", f"--solver.model.name_or_path={tiny_model_dir}",
              "--loop.iterations=1", "--loop.documents_per_iteration=2", "--loop.questions_per_document=2",
              "--loop.answers_per_question=2", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
              "--target_set.init_args.size=16", "--heldout_set.init_args.size=2", "--generator_reward=constant"]
    assert main([*common, f"--run_dir={tmp_path / 'alone'}"]) == 0
    alone = _solver_metrics(tmp_path / "alone")
    assert alone["solver/update_skipped"] == "1.0" and "solver/target_reward" not in alone  # no target stage
    assert main([*common, "--loop.target_mix=1.0", f"--run_dir={tmp_path / 'mixed'}"]) == 0
    mixed = _solver_metrics(tmp_path / "mixed")
    assert mixed.get("solver/update_skipped", "0.0") == "0.0" and "solver/target_reward" in mixed
    rows = float(mixed["solver/update_rows"])
    assert rows > 0 and rows % 2 == 0
