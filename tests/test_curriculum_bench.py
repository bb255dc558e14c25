"""``infuser bench curriculum``: equal budgets enforced, runs cached, interrupted runs resumed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from infuser.bench.curriculum import Arm, ArmRecord, bench_curriculum, code_digest, verdict
from infuser.cli import main

REPO = Path(__file__).resolve().parents[1]
SMALL = {"loop": {"iterations": 1, "documents_per_iteration": 3, "questions_per_document": 2,
                  "answers_per_question": 3, "target_answers_per_question": 2, "eval_samples": 1,
                  "keep_checkpoints": 1},
         "target_set": {"class_path": "ToyQuestions", "init_args": {"split": "target", "size": 6}},
         "heldout_set": {"class_path": "ToyQuestions", "init_args": {"split": "heldout", "size": 6}},
         # several optimizer steps per update, so that each update draws an order of its rows
         "generator": {"update": {"mini_batch_size": 2}}, "solver": {"update": {"mini_batch_size": 4}}}


@pytest.mark.parametrize("overrides", [{"loop": {"iterations": 3}}, {"solver": {"optimizer": {"lr": 1.0}}},
                                       {"seed": 3}, {"heldout_set": {"init_args": {"size": 5}}}])
def test_an_arm_may_not_change_the_budget(overrides, tmp_path):
    with pytest.raises(ValueError, match="share the budget"):
        bench_curriculum([Arm("INFUSER"), Arm("bigger", overrides)], str(REPO / "configs" / "toy.yaml"),
                         cache_dir=str(tmp_path))


def test_a_reference_arm_may(tmp_path):
    """Refusal happens before anything runs; a reference arm passes the check (and then fails on a missing file)."""
    with pytest.raises(ValueError, match="base_config"):
        bench_curriculum([Arm("INFUSER"), Arm("ref", {"loop": {"iterations": 3}}, reference=True)],
                         str(tmp_path / "missing.yaml"), cache_dir=str(tmp_path))


def _record(name: str, gain: float, std: float, reference: bool = False) -> ArmRecord:
    return ArmRecord(arm=name, seeds=[0, 1, 2], heldout_gain_mean=gain, heldout_gain_std=std, seconds=1.0,
                     heldout_start_mean=0.5, heldout_end_mean=0.5 + gain, target_gain_mean=gain, reference=reference,
                     heldout_by_iteration={}, curriculum_by_iteration={}, golden_accuracy_by_iteration={})


def test_verdict_ignores_references_and_needs_more_than_noise():
    records = [_record("INFUSER", 0.15, 0.01), _record("SPICE", 0.10, 0.01), _record("ref", 0.4, 0.0, True)]
    result = verdict(records, "INFUSER")
    assert result.baseline == "SPICE" and result.ratio == pytest.approx(1.5) and result.beyond_noise
    noisy = verdict([_record("INFUSER", 0.15, 0.1), _record("SPICE", 0.10, 0.1)], "INFUSER")
    assert not noisy.beyond_noise  # ratio 1.5 but the difference is within two standard errors
    losing = verdict([_record("INFUSER", -0.01, 0.0), _record("SPICE", -0.02, 0.0)], "INFUSER")
    assert not losing.beyond_noise


def _step_one(run: Path) -> dict[str, str]:
    with open(run / "logs" / "metrics.csv", newline="") as handle:
        return next(row for row in csv.DictReader(handle) if row["step"] == "1")


def _solver_only(row: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in row.items() if key.startswith("solver/")}


@pytest.mark.slow
def test_runs_are_cached_and_resumed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    config = {
        "base_config": "configs/toy.yaml",
        "quick_profile": {"seeds": [0], "overrides": SMALL},
        "cache_dir": str(tmp_path / "cache"),
        "arms": [{"name": "INFUSER"},
                 {"name": "frozen generator", "overrides": {"loop": {"freeze_generator": True},
                                                            "generator_reward": "constant"}},
                 {"name": "SPICE", "overrides": {"generator_reward": "spice_variance"}}],
    }
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(config))
    output = tmp_path / "out" / "curriculum.json"
    argv = ["bench", "curriculum", "--config", str(path), "--quick", "true", "--json", str(output)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "running   INFUSER / seed 0" in first and "held-out accuracy gain" in first
    records = json.loads(output.read_text())
    assert [r["arm"] for r in records] == ["INFUSER", "frozen generator", "SPICE"]
    for record in records:
        assert {"arm", "seeds", "heldout_gain_mean", "heldout_gain_std", "seconds"} <= set(record)
        assert record["seeds"] == [0] and set(record["heldout_by_iteration"]) == {"0", "1"}
    assert (tmp_path / "out" / "curriculum.heldout.png").stat().st_size > 0
    # same seed, same first drafts and answers: the Solver's first update is the same whether or
    # not the Generator updated before it (its own stream orders its rows)
    first_update = [_step_one(tmp_path / "cache" / "quick" / arm / "seed_0") for arm in ("spice", "frozen-generator")]
    assert first_update[0]["generator/update_skipped"] == "0.0"  # the Generator stepped before the Solver...
    assert _solver_only(first_update[0]) == _solver_only(first_update[1])  # ...and changed nothing of its update
    assert first_update[1]["solver/grad_norm"]
    assert (tmp_path / "out" / "curriculum.curriculum.png").stat().st_size > 0

    # finished runs are read back; an interrupted one (checkpoint, no summary) resumes
    run = tmp_path / "cache" / "quick" / "frozen-generator" / "seed_0"
    (run / "summary.json").unlink()
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "cached    INFUSER / seed 0" in second and "resuming  frozen generator / seed 0" in second
    def without_seconds(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert without_seconds(json.loads(output.read_text())) == without_seconds(records)
    assert {tuple(r["code"]) for r in records} == {(code_digest(),)} and "versions of infuser" not in second

    # a run made by other code is flagged: the comparison would not be on equal terms
    (run / "bench_code").write_text("0123456789ab\n")
    assert main(argv) == 0
    assert "WARNING: these runs were made by 2 versions of infuser's code" in capsys.readouterr().out
    assert json.loads(output.read_text())[1]["code"] == ["0123456789ab"]

    # a changed configuration starts the affected runs over
    config["quick_profile"]["overrides"]["loop"]["answers_per_question"] = 2
    path.write_text(json.dumps(config))
    assert main(argv) == 0
    assert "running   INFUSER / seed 0" in capsys.readouterr().out
