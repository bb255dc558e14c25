"""Generator rewards as components: the formulas, the registry, and what the loop does with them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from infuser import registry
from infuser.cli import main
from infuser.model_config import ModelConfig
from infuser.models import load_causal_lm, load_tokenizer
from infuser.rl.generator_rewards import (
    ConstantReward,
    DraftOutcomes,
    HardnessReward,
    InfluenceReward,
    Representations,
    RepresentationSimilarityReward,
    RZeroUncertaintyReward,
    SpiceVarianceReward,
)
from infuser.rollout.representations import prompt_representations

RATES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
REPO = Path(__file__).resolve().parents[1]


def test_spice_variance_peaks_at_one_half():
    rewards = SpiceVarianceReward()(DraftOutcomes(pass_rates=RATES))
    expected = [math.exp(-((p * (1 - p) - 0.25) ** 2) / 0.02) for p in RATES.tolist()]
    assert torch.allclose(rewards, torch.tensor(expected, dtype=torch.float64))
    assert rewards[2] == 1.0 and rewards[0] == rewards[4] and rewards[1] == rewards[3]


def test_rzero_uncertainty_is_a_tent():
    rewards = RZeroUncertaintyReward()(DraftOutcomes(pass_rates=RATES))
    assert rewards.tolist() == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_constant_and_influence():
    assert ConstantReward(0.3)(DraftOutcomes(pass_rates=RATES)).tolist() == [0.3] * 5
    scores = torch.tensor([0.1, math.nan, -0.2, 0.0, 0.0], dtype=torch.float64)
    out = InfluenceReward()(DraftOutcomes(pass_rates=RATES, influence=scores))
    assert out[0] == 0.1 and math.isnan(out[1])  # NaN stays missing: DuGRPO leaves it out
    with pytest.raises(ValueError, match="influence"):
        InfluenceReward()(DraftOutcomes(pass_rates=RATES))
    assert InfluenceReward.needs_influence and not SpiceVarianceReward.needs_influence


def test_hardness_pays_failures_of_questions_with_signal():
    assert HardnessReward()(DraftOutcomes(pass_rates=RATES)).tolist() == [0.0, 0.75, 0.5, 0.25, 0.0]
    assert not HardnessReward.needs_influence and not HardnessReward.needs_representations


def test_representation_similarity_mean_and_max():
    """Cosines to the target questions' vectors: ``mean`` averages them (a question between two
    target clusters scores by both), ``max`` takes the nearest; lengths do not matter."""
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    questions = torch.tensor([[5.0, 0.0, 0.0],   # on the first target question
                              [1.0, 1.0, 0.0],   # between both
                              [0.0, 0.0, 2.0],   # orthogonal to both
                              [-1.0, 0.0, 0.0]])  # opposite the first
    outcomes = DraftOutcomes(pass_rates=torch.full((4,), 0.5, dtype=torch.float64),
                             representations=Representations(questions=questions, target=target))
    mean = RepresentationSimilarityReward("mean")(outcomes)
    maximum = RepresentationSimilarityReward("max")(outcomes)
    half = math.sqrt(0.5)
    assert mean.dtype == torch.float64
    assert torch.allclose(mean, torch.tensor([0.5, half, 0.0, -0.5], dtype=torch.float64))
    assert torch.allclose(maximum, torch.tensor([1.0, half, 0.0, 0.0], dtype=torch.float64))
    # mean of cosines = cosine to the unit-vector centroid x that centroid's norm (one factor per iteration)
    centroid = torch.nn.functional.normalize(target, dim=-1).mean(0)
    to_centroid = torch.nn.functional.cosine_similarity(questions, centroid.unsqueeze(0)).double()
    assert torch.allclose(mean, to_centroid * centroid.norm().double())
    assert RepresentationSimilarityReward.needs_representations and not RepresentationSimilarityReward.needs_influence
    with pytest.raises(ValueError, match="representations"):
        RepresentationSimilarityReward()(DraftOutcomes(pass_rates=RATES))
    with pytest.raises(ValueError, match="generator_reward.variant"):
        RepresentationSimilarityReward("median")  # type: ignore[arg-type]


def test_a_prompts_representation_does_not_depend_on_its_batch(tiny_model_dir):
    model = load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir)))
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    prompts = ["Question: what is 3 + 4?", "Question: what is 12 + 9? Think column by column, then box it."]
    together = prompt_representations(model, tokenizer, prompts, batch_size=2)
    alone = torch.cat([prompt_representations(model, tokenizer, [prompt]) for prompt in prompts])
    assert together.shape == (2, model.config.hidden_size) and together.dtype == torch.float32
    assert torch.allclose(together, alone, atol=1e-5)
    assert model.training  # restored after the call


@pytest.mark.parametrize("bad", [dict(width=0.0), dict(width=-1.0)])
def test_bad_width_is_refused(bad):
    with pytest.raises(ValueError, match="width"):
        SpiceVarianceReward(**bad)


def test_registered_names():
    names = set(registry.registered("generator_reward"))
    assert {"influence", "spice_variance", "rzero_uncertainty", "constant", "hardness",
            "representation_similarity"} <= names
    assert registry.resolve("generator_reward", "spice_variance") is SpiceVarianceReward


def _fit_args(model_dir, run_dir, *extra):
    return ["fit", "--config", str(REPO / "configs" / "toy.yaml"),
            f"--generator.model.name_or_path={model_dir}", f"--solver.model.name_or_path={model_dir}",
            "--loop.iterations=1", "--loop.documents_per_iteration=3", "--loop.questions_per_document=2",
            "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
            "--target_set.init_args.size=6", "--heldout_set.init_args.size=6", f"--run_dir={run_dir}", *extra]


def _questions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "questions" / "iter_00001.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_pass_rate_reward_skips_target_and_influence(tmp_path):
    run_dir = tmp_path / "spice"  # the bundled toy base: the tiny test model drafts no valid question
    assert main(_fit_args("builtin:toy", run_dir, "--generator_reward=spice_variance")) == 0
    stages = json.loads((run_dir / "summary.json").read_text())["seconds_by_stage"]
    assert stages["target"] == 0.0 and stages["influence"] == 0.0 and stages["generate"] > 0
    rows = [row for row in _questions(run_dir) if row["valid"]]
    assert rows, "the tiny model drafted no valid question"
    for row in rows:
        p = row["pass_rate"]
        assert row["influence"] is None
        assert row["reward"] == pytest.approx(math.exp(-((p * (1 - p) - 0.25) ** 2) / 0.02))


@pytest.mark.slow
def test_hardness_and_representation_similarity_through_fit(tmp_path):
    """Neither reward runs the target stage; representation similarity is timed as the influence
    stage. Same seed, same first drafts, same Solver: ``max`` is at least ``mean`` on every question."""
    hardness = tmp_path / "hardness"
    assert main(_fit_args("builtin:toy", hardness, "--generator_reward=hardness")) == 0
    stages = json.loads((hardness / "summary.json").read_text())["seconds_by_stage"]
    assert stages["target"] == 0.0 and stages["influence"] == 0.0
    rows = [row for row in _questions(hardness) if row["valid"]]
    assert rows
    for row in rows:
        p = row["pass_rate"]
        assert row["reward"] == pytest.approx(1 - p if 0 < p < 1 else 0.0)
    rewards = {}
    for variant in ("mean", "max"):
        run_dir = tmp_path / variant
        assert main(_fit_args("builtin:toy", run_dir, "--generator_reward=representation_similarity",
                              f"--generator_reward.variant={variant}")) == 0
        stages = json.loads((run_dir / "summary.json").read_text())["seconds_by_stage"]
        assert stages["target"] == 0.0 and stages["influence"] > 0
        rewards[variant] = {row["text"]: row["reward"] for row in _questions(run_dir) if row["valid"]}
        assert rewards[variant] and all(-1 <= r <= 1 for r in rewards[variant].values())
    assert rewards["mean"].keys() == rewards["max"].keys()  # the same first drafts
    assert all(rewards["max"][text] >= rewards["mean"][text] - 1e-9 for text in rewards["mean"])


@pytest.mark.slow
def test_solver_on_target_bypasses_the_generator(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "reference"
    assert main(_fit_args(tiny_model_dir, run_dir, "--loop.solver_data=target", "--generator_reward=constant")) == 0
    stages = json.loads((run_dir / "summary.json").read_text())["seconds_by_stage"]
    assert stages["generate"] == 0.0 and stages["target"] > 0
    assert _questions(run_dir) == []  # nothing drafted
