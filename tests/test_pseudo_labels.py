"""R-Zero's pseudo-labels and pass-rate band (``loop.solver_labels``, ``loop.pass_rate_band``), and the
majority-gated influence reward that reads the same vote."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from infuser import registry
from infuser.cli import main
from infuser.config import LoopConfig
from infuser.data.questions import MCQuestion
from infuser.rl.generator_rewards import DraftOutcomes, MajorityGatedInfluenceReward
from infuser.rl.pseudo_labels import MajorityVote
from infuser.rollout.rows import Answers, SplitRollouts

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ("1", "2", "3", "4")


def _answers(golden: list[int], choices: list[str], samples: int) -> Answers:
    """Answers to questions with golden option ``golden[q]``; only ``choices`` matter to a vote."""
    questions = [MCQuestion(question=f"q{q}", options=OPTIONS, answer_index=index) for q, index in enumerate(golden)]
    rows = len(choices)
    rollouts = SplitRollouts(batch=None, prompts=range(len(golden)), num_samples=samples, texts=[""] * rows,
                             lengths=torch.ones(rows), truncated=torch.zeros(rows, dtype=torch.bool))
    rewards = torch.tensor([float(c == questions[r // samples].answer_letter) for r, c in enumerate(choices)])
    return Answers(questions=questions, rollouts=rollouts, rewards=rewards, choices=choices)


def test_the_majority_is_the_most_frequent_choice_and_ties_go_to_the_first_sampled():
    answers = _answers([0, 1, 2, 3], ["A", "B", "B", "", "C", "D", "C", "D", "", "", "", "", "D", "D", "D", "A"], 4)
    vote = MajorityVote.of(answers)
    assert vote.labels == ["B", "C", "", "D"]  # "" (no option picked) never votes; C and D tie: C came first
    assert vote.agrees_golden.tolist() == [False, False, False, True]
    relabelled = answers.graded_against(vote.labels)
    assert relabelled.rewards.tolist() == [0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert relabelled.pass_rates().tolist() == [0.5, 0.5, 0.0, 0.75]  # R-Zero's empirical accuracy
    assert relabelled.choices == answers.choices and answers.rewards[0] == 1.0  # the original is untouched


def test_the_majority_is_checked_against_the_world_when_it_can_tell():
    answers = _answers([0, 0, 0], ["A", "A", "B", "B", "", ""], 2)
    vote = MajorityVote.of(answers)
    # a stand-in world in which option "2" (letter B) is the true answer of every question but the last
    verdicts = vote.correct(answers, lambda q: None if q.question == "q2" else q.options[q.answer_index] == "2")
    assert verdicts == [False, True, None]


def test_the_band_keeps_its_ends_at_float32_shares():
    config = LoopConfig(pass_rate_band=(0.2, 0.6))
    shares = (torch.tensor([1.0, 1, 1, 0, 0]).mean(), torch.tensor([1.0, 0, 0, 0, 0]).mean())  # 3/5, 1/5 in float32
    assert config.in_band([float(s) for s in shares] + [0.0, 0.8]) == [True, True, False, False]
    assert LoopConfig().in_band([0.0, 1.0]) == [True, True]


@pytest.mark.parametrize("band", [(0.6, 0.4), (-0.1, 0.5), (0.5, 1.5)])
def test_a_bad_band_is_refused(band):
    with pytest.raises(ValueError, match="loop.pass_rate_band"):
        LoopConfig(pass_rate_band=band)


def test_the_gate_keeps_influence_only_where_the_majority_agrees():
    influence = torch.tensor([0.3, 0.3, -0.2, -0.2, math.nan], dtype=torch.float64)
    agrees = torch.tensor([True, False, True, False, False])
    outcomes = DraftOutcomes(pass_rates=torch.full((5,), 0.5, dtype=torch.float64), influence=influence,
                             majority_agrees_golden=agrees)
    gated = MajorityGatedInfluenceReward()(outcomes)
    assert gated[:4].tolist() == [0.3, 0.0, -0.2, -0.2] and math.isnan(gated[4])  # never above the ungated reward
    penalised = MajorityGatedInfluenceReward(penalty=0.5)(outcomes)
    assert penalised[:4].tolist() == [0.3, -0.5, -0.2, -0.7]
    with pytest.raises(ValueError, match="majority vote"):
        MajorityGatedInfluenceReward()(DraftOutcomes(pass_rates=outcomes.pass_rates, influence=influence))
    with pytest.raises(ValueError, match="penalty"):
        MajorityGatedInfluenceReward(penalty=-1.0)
    assert registry.resolve("generator_reward", "influence_majority_gated") is MajorityGatedInfluenceReward
    assert MajorityGatedInfluenceReward.needs_influence


@pytest.mark.slow
def test_rzero_as_in_rzero(tmp_path):
    """Pseudo-labels, the band and R-Zero's Generator reward on the pseudo-label pass rate, in one run."""
    run_dir = tmp_path / "rzero"
    argv = ["fit", "--config", str(REPO / "configs" / "toy.yaml"), "--loop.iterations=1",
            "--loop.documents_per_iteration=3", "--loop.questions_per_document=2", "--loop.answers_per_question=4",
            "--loop.target_answers_per_question=2", "--loop.eval_samples=1", "--target_set.init_args.size=6",
            "--heldout_set.init_args.size=6", f"--run_dir={run_dir}", "--generator_reward=rzero_uncertainty",
            "--loop.solver_labels=majority_vote", "--loop.pass_rate_band=[0.25, 0.75]"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (run_dir / "questions" / "iter_00001.jsonl").read_text().splitlines()]
    valid = [row for row in rows if row["valid"]]
    assert valid, "the toy base drafted no valid question"
    for row in valid:
        assert row["majority"] in "ABCDEFGHIJ"
        if row["majority"]:
            assert row["pass_rate"] >= 0.25  # the majority's share: at least one sample in four agrees with it
        assert row["reward"] == pytest.approx(1 - 2 * abs(row["pass_rate"] - 0.5))
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        step_one = next(row for row in csv.DictReader(handle) if row["step"] == "1")
    in_band = sum(0.25 <= row["pass_rate"] <= 0.75 for row in valid) / len(valid)
    assert float(step_one["solver/in_band_fraction"]) == pytest.approx(in_band)
    agreeing = sum(row["majority"] == row["answer"] for row in valid) / len(valid)
    assert float(step_one["solver/majority_agrees_golden"]) == pytest.approx(agreeing)
    assert 0.0 <= float(step_one["solver/majority_correct"]) <= 1.0  # the toy world can check an answer
