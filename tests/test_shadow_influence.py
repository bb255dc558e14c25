"""``shadow_influence``: other estimators score the loop's questions beside the reward's own, for
comparison only; and the agreement measures they are reported with."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infuser.cli import main
from infuser.config import ConfigurationError, LoopConfig, RoleConfig, RunSetup
from infuser.influence.agreement import spearman, top_choice_agreement
from infuser.influence.tracin import TracInInfluence
from infuser.preflight import check_before_loading
from infuser.rl.generator_rewards import InfluenceReward, SpiceVarianceReward

REPO = Path(__file__).resolve().parents[1]
SHADOWS = "{tracin: tracin, tracin_cosine: {class_path: tracin, init_args: {cosine: true}}}"


def test_spearman_uses_average_ranks_for_ties():
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])) == pytest.approx(1)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1)
    # ranks (1.5, 1.5, 3) vs (1, 2, 3): Pearson of the ranks
    assert spearman(torch.tensor([5.0, 5.0, 7.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(0.8660254)
    assert math.isnan(spearman(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])))


def test_top_choice_agreement_compares_the_best_of_each_group():
    x = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 0.3])
    y = torch.tensor([0.0, 0.8, 0.9, 0.1, 0.6, 0.4])
    # groups: {0, 1, 2} best at 1 under x and at 2 under y; {3, 4} best at 4 under both; {5} alone: not compared
    assert top_choice_agreement(x, y, [0, 0, 0, 1, 1, 2]) == pytest.approx(1 / 2)
    assert top_choice_agreement(x, x, [0, 0, 0, 1, 1, 2]) == 1.0
    assert math.isnan(top_choice_agreement(x[:2], y[:2], [0, 1]))


def _setup(solver_data: str = "generated") -> RunSetup:
    return RunSetup(generator=RoleConfig(), solver=RoleConfig(), loop=LoopConfig(solver_data=solver_data),
                    strategy="auto", share_base=False)


@pytest.mark.parametrize("reward, solver_data", [(SpiceVarianceReward(), "generated"),
                                                 (InfluenceReward(), "target")])
def test_shadows_need_the_reward_to_score_influence(reward, solver_data):
    with pytest.raises(ConfigurationError, match=r"shadow_influence: its estimators \(tracin\) score beside"):
        check_before_loading(_setup(solver_data), TracInInfluence(), reward, {"tracin": TracInInfluence()})


def _fit(run_dir: Path, *extra: str) -> None:
    assert main(["fit", "--config", str(REPO / "configs" / "rules.yaml"), "--trainer.threads=1",
                 "--loop.iterations=2", "--loop.eval_every=2", "--loop.documents_per_iteration=6",
                 "--heldout_set.init_args.size=20", f"--run_dir={run_dir}", *extra]) == 0


def _questions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((run_dir / "questions").glob("*.jsonl"))
            for line in path.read_text().splitlines()]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_shadow_scores_are_recorded_and_change_nothing_else(tmp_path):
    """The rule world at one thread, with and without two TracIn shadows: the same questions,
    rewards, advantages, metrics and final weights; the shadows' scores and agreements on top."""
    _fit(tmp_path / "plain")
    _fit(tmp_path / "shadowed", "--shadow_influence", SHADOWS)
    plain, shadowed = _questions(tmp_path / "plain"), _questions(tmp_path / "shadowed")
    assert all("shadow_influence" not in row for row in plain)
    assert [{k: v for k, v in row.items() if k != "shadow_influence"} for row in shadowed] == plain
    scored = [row for row in shadowed if row["valid"]]
    assert scored and all(set(row["shadow_influence"]) == {"tracin", "tracin_cosine"} for row in scored)
    # a question the reward's estimator leaves at 0 (no signal) is left at 0 by the shadows too
    for row in scored:
        if row["influence"] == 0.0:
            assert row["shadow_influence"] == {"tracin": 0.0, "tracin_cosine": 0.0}

    def same(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if not k.startswith(("time/", "throughput/", "shadow/"))}
                for row in rows]

    plain_metrics, shadowed_metrics = _metrics(tmp_path / "plain"), _metrics(tmp_path / "shadowed")
    assert same(shadowed_metrics) == same(plain_metrics)
    assert not any(key.startswith("shadow/") for key in plain_metrics[0])
    agreement = [float(row["shadow/tracin/spearman"]) for row in shadowed_metrics if row.get("shadow/tracin/spearman")]
    assert agreement and all(-1 <= rho <= 1 for rho in agreement)
    assert any(row.get("shadow/tracin_cosine/kind/carry") for row in shadowed_metrics)
    for role in ("generator", "solver"):
        for path in (tmp_path / "plain" / "final" / role).glob("*.safetensors"):
            before, after = load_file(path), load_file(tmp_path / "shadowed" / "final" / role / path.name)
            assert all(torch.equal(before[name], after[name]) for name in before)
