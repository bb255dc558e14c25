"""``infuser bench curriculum``: equal budgets enforced, runs cached, interrupted runs resumed."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from infuser.bench import curriculum
from infuser.bench.curriculum import Arm, Profile, bench_curriculum, code_digest
from infuser.bench.curriculum_report import ArmRecord, headroom, paired_vs, verdict
from infuser.cli import build_parser, expand_argv, main

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


def _record(name: str, gains: list[float], reference: bool = False, seeds: list[int] | None = None) -> ArmRecord:
    """A record with per-seed ``gains`` (on seeds 0, 1, ... unless given)."""
    seeds = seeds if seeds is not None else list(range(len(gains)))
    mean = statistics.fmean(gains)
    return ArmRecord(arm=name, seeds=seeds, heldout_gains=gains, heldout_gain_mean=mean,
                     heldout_gain_std=statistics.stdev(gains) if len(gains) > 1 else 0.0, seconds=1.0,
                     heldout_start_mean=0.5, heldout_end_mean=0.5 + mean, target_gain_mean=mean, reference=reference,
                     heldout_by_iteration={}, curriculum_by_iteration={}, golden_accuracy_by_iteration={})


SEED_EFFECT = [0.10, -0.05, 0.20, 0.00, 0.08]  # what every arm shares on a seed: far larger than the arms' difference


def test_verdict_ignores_references_and_needs_more_than_noise():
    spice = [0.10 + e for e in SEED_EFFECT]
    infuser = [g + 0.05 + 0.001 * i for i, g in enumerate(spice)]
    records = [_record("INFUSER", infuser), _record("SPICE", spice), _record("ref", [0.4] * 5, reference=True)]
    result = verdict(records, "INFUSER")
    assert result.baseline == "SPICE" and result.beyond_noise
    assert result.ratio == pytest.approx(statistics.fmean(infuser) / statistics.fmean(spice)) and result.ratio > 1.2
    noisy = verdict([_record("INFUSER", [g + d for g, d in zip(spice, [0.2, -0.15, 0.1, -0.1, 0.2])]),
                     _record("SPICE", spice)], "INFUSER")
    assert noisy.ratio > 1.2 and not noisy.beyond_noise  # the per-seed differences straddle 0
    losing = verdict([_record("INFUSER", [-0.01, -0.01]), _record("SPICE", [-0.02, -0.02])], "INFUSER")
    assert not losing.beyond_noise


def test_paired_vs_takes_the_seeds_both_arms_ran():
    """The difference is paired seed by seed over the common seeds; its interval is Student-t on
    those differences (t_0.975 with 2 degrees of freedom: 4.302652729911275)."""
    infuser = _record("INFUSER", [0.3, 0.1, 0.5, 0.2, 0.4])
    rzero = _record("R-Zero", [0.25, 0.12, 0.41], seeds=[0, 1, 2])
    result = paired_vs(infuser, rzero)
    differences = [0.05, -0.02, 0.09]
    half = 4.302652729911275 * statistics.stdev(differences) / math.sqrt(3)
    assert result["n"] == 3 and result["mean"] == pytest.approx(statistics.fmean(differences), rel=1e-12)
    assert result["ci_low"] == pytest.approx(result["mean"] - half, rel=1e-7)
    assert result["ci_high"] == pytest.approx(result["mean"] + half, rel=1e-7)
    mirrored = paired_vs(rzero, infuser)
    assert mirrored["mean"] == pytest.approx(-result["mean"]) and mirrored["n"] == 3


def test_pairing_removes_the_variance_the_arms_share():
    """A small, steady difference under a large seed effect: paired, it is beyond noise; compared
    as two independent samples (Welch), it would be lost in the seed effect."""
    frozen = [0.1 + e for e in SEED_EFFECT]
    oracle = [g + 0.03 + 0.002 * (i % 2) for i, g in enumerate(frozen)]
    paired = paired_vs(_record("oracle", oracle), _record("frozen", frozen))
    assert paired["ci_low"] > 0
    welch = math.sqrt(statistics.variance(oracle) / 5 + statistics.variance(frozen) / 5)
    assert paired["mean"] < 2 * welch  # unpaired, the same data would not separate the arms


def test_headroom_gate():
    frozen = [0.1 + e for e in SEED_EFFECT]
    records = [_record("oracle", [g + 0.03 + 0.002 * (i % 2) for i, g in enumerate(frozen)]), _record("frozen", frozen)]
    gate = headroom(records, "oracle", "frozen")
    assert gate.passed and gate.n == 5 and "room for a curriculum" in gate.verdict
    assert gate.difference > 3 * gate.standard_error
    noisy = [_record("oracle", [g + d for g, d in zip(frozen, [0.05, -0.04, 0.03, 0.0, -0.02])]),
             _record("frozen", frozen)]
    gate = headroom(noisy, "oracle", "frozen")
    assert not gate.passed and "the world has no room for any curriculum" in gate.verdict
    single = headroom([_record("oracle", [0.5]), _record("frozen", [0.1])], "oracle", "frozen")
    assert not single.passed and single.n == 1 and "undecided" in single.verdict


@pytest.mark.parametrize("argv, quick", [(["--quick"], True), (["--quick", "--json", "x.json"], True),
                                         (["--quick", "true"], True), (["--quick", "false"], False),
                                         (["--quick=true"], True), ([], False)])
def test_quick_is_a_flag(argv, quick, tmp_path):
    argv = ["bench", "curriculum", "--base_config", "configs/toy.yaml", "--arms", "[{name: INFUSER}]", *argv]
    expanded = expand_argv(argv)
    config = build_parser(expanded).parse_args(expanded)
    assert config.bench.curriculum.quick is quick


def test_arm_seeds_are_a_prefix_and_must_be_positive():
    profile = Profile(seeds=[3, 1, 4, 1, 5])
    assert Arm("R-Zero", seeds=2).seeds_of(profile) == [3, 1] and Arm("INFUSER").seeds_of(profile) == profile.seeds
    assert Arm("many", seeds=9).seeds_of(profile) == profile.seeds  # at most: a quick profile has fewer seeds
    with pytest.raises(ValueError, match=r"arms\[R-Zero\].seeds"):
        Arm("R-Zero", seeds=0)


def test_the_gate_needs_both_arms(tmp_path):
    with pytest.raises(ValueError, match="oracle: the headroom gate"):
        bench_curriculum([Arm("INFUSER"), Arm("oracle")], str(REPO / "configs" / "toy.yaml"), oracle="oracle",
                         cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="frozen: 'nope'"):
        bench_curriculum([Arm("INFUSER"), Arm("oracle")], str(REPO / "configs" / "toy.yaml"), oracle="oracle",
                         frozen="nope", cache_dir=str(tmp_path))


def _fake_execute(gains):
    """Stands in for the runs: writes what a finished ``infuser fit`` leaves (summary, metrics,
    first drafts), with ``gains(arm, seed)`` as the metric's gain over two evaluations."""

    def execute(runs, workers, threads):
        for run in runs:
            run.root.mkdir(parents=True, exist_ok=True)
            gain = gains(run.arm.name, run.seed)
            (run.root / "summary.json").write_text(json.dumps({"seconds_total": 2.0, "target_accuracy_start": 0.5,
                                                               "target_accuracy_end": 0.5 + gain}))
            (run.root / "logs").mkdir(exist_ok=True)
            rows = [{"step": 0, "eval/heldout_exact": 0.4}, {"step": 1, "curriculum/product": 0.5 + gain},
                    {"step": 2, "eval/heldout_exact": 0.4 + gain, "curriculum/product": 0.5}]
            with open(run.root / "logs" / "metrics.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["step", "eval/heldout_exact", "curriculum/product"])
                writer.writeheader()
                writer.writerows(rows)
            (run.root / "questions").mkdir(exist_ok=True)
            drafts = "scripted" if run.arm.name == "oracle" else f"drawn with seed {run.seed}"
            (run.root / "questions" / "iter_00001.jsonl").write_text(json.dumps({"text": drafts}) + "\n")
            (run.root / "bench_seconds").write_text("3.0\n")

    return execute


def test_the_json_carries_paired_differences_the_gate_and_the_budget(tmp_path, monkeypatch, capsys):
    effect = dict(zip(range(5), SEED_EFFECT))
    offsets = {"INFUSER": 0.05, "frozen": 0.0, "oracle": 0.2, "R-Zero": 0.02}
    monkeypatch.setattr(curriculum, "_execute", _fake_execute(lambda arm, seed: offsets[arm] + effect[seed]))
    output = tmp_path / "out" / "bench.json"
    result = bench_curriculum(
        [Arm("INFUSER"), Arm("frozen"), Arm("oracle", reference=True), Arm("R-Zero", seeds=3)],
        str(REPO / "configs" / "toy.yaml"), profile=Profile(seeds=[0, 1, 2, 3, 4], budget_minutes=1.0),
        metric="eval/heldout_exact", oracle="oracle", frozen="frozen", cache_dir=str(tmp_path / "cache"),
        json=str(output))
    saved = json.loads(output.read_text())
    assert saved["metric"] == "eval/heldout_exact" and saved["profile"] == "full"
    arms = {record["arm"]: record for record in saved["arms"]}
    assert arms["R-Zero"]["seeds"] == [0, 1, 2] and arms["INFUSER"]["seeds"] == [0, 1, 2, 3, 4]
    versus = arms["INFUSER"]["paired_vs"]["R-Zero"]
    assert versus["n"] == 3 and versus["mean"] == pytest.approx(0.03)
    assert versus["ci_low"] == pytest.approx(0.03) and versus["ci_high"] == pytest.approx(0.03)  # no seed noise left
    assert arms["INFUSER"]["heldout_gain_mean"] == pytest.approx(0.05 + statistics.fmean(SEED_EFFECT))
    assert arms["INFUSER"]["run_seconds"] == [3.0] * 5 and saved["run_seconds_total"] == pytest.approx(3.0 * 18)
    assert saved["within_budget"] is True  # 54 s over 2 workers, within 1 minute
    assert saved["headroom"]["passed"] and result.headroom.passed
    out = capsys.readouterr().out
    assert "INFUSER minus each arm" in out and "headroom gate: PASSED" in out
    assert "first drafts differ from INFUSER's on a common seed: oracle" in out
    assert (tmp_path / "out" / "bench.heldout.png").stat().st_size > 0
    assert (tmp_path / "out" / "bench.curriculum.png").stat().st_size > 0

    offsets["oracle"] = 0.0  # a world in which even the oracle's questions teach nothing
    bench_curriculum([Arm("INFUSER"), Arm("frozen"), Arm("oracle", reference=True), Arm("R-Zero", seeds=3)],
                     str(REPO / "configs" / "toy.yaml"), profile=Profile(seeds=[0, 1, 2, 3, 4]),
                     metric="eval/heldout_exact", oracle="oracle", frozen="frozen", cache_dir=str(tmp_path / "cache"))
    assert "headroom gate: FAILED" in capsys.readouterr().out


def test_a_missing_metric_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(curriculum, "_execute", _fake_execute(lambda arm, seed: 0.1))
    with pytest.raises(ValueError, match="metric: INFUSER / seed 0 logged no 'eval/heldout_accuracy'"):
        bench_curriculum([Arm("INFUSER")], str(REPO / "configs" / "toy.yaml"), cache_dir=str(tmp_path))


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
    argv = ["bench", "curriculum", "--config", str(path), "--quick", "--json", str(output)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "running   INFUSER / seed 0" in first and "gain of eval/heldout_accuracy" in first
    records = json.loads(output.read_text())["arms"]
    assert [r["arm"] for r in records] == ["INFUSER", "frozen generator", "SPICE"]
    for record in records:
        assert {"arm", "seeds", "heldout_gain_mean", "heldout_gain_std", "seconds", "paired_vs"} <= set(record)
        assert record["seeds"] == [0] and set(record["heldout_by_iteration"]) == {"0", "1"}
        assert record["run_seconds"][0] > 0
    # same seed, same base Generator: every arm drew the same first drafts
    assert len({record["first_drafts"][0] for record in records}) == 1 and records[0]["first_drafts"][0]
    assert "every drafting arm drew INFUSER's first drafts" in first
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
        return [{k: v for k, v in row.items() if k not in ("seconds", "run_seconds")} for row in rows]

    assert without_seconds(json.loads(output.read_text())["arms"]) == without_seconds(records)
    assert {tuple(r["code"]) for r in records} == {(code_digest(),)} and "versions of infuser" not in second

    # a run made by other code is flagged: the comparison would not be on equal terms
    (run / "bench_code").write_text("0123456789ab\n")
    assert main(argv) == 0
    assert "WARNING: these runs were made by 2 versions of infuser's code" in capsys.readouterr().out
    assert json.loads(output.read_text())["arms"][1]["code"] == ["0123456789ab"]

    # a changed configuration starts the affected runs over
    config["quick_profile"]["overrides"]["loop"]["answers_per_question"] = 2
    path.write_text(json.dumps(config))
    assert main(argv) == 0
    assert "running   INFUSER / seed 0" in capsys.readouterr().out


@pytest.mark.parametrize("files", [["bench_curriculum.yaml"], ["bench_curriculum_distractor.yaml"],
                                   ["bench_curriculum_rules.yaml"],
                                   ["bench_curriculum_rules.yaml", "bench_curriculum_rules_checked.yaml"]])
def test_the_bundled_benchmarks_parse(files, monkeypatch):
    """Every bundled benchmark parses; the claim's benchmarks run 10 seeds of the claim's arms, 5 of the rest."""
    monkeypatch.chdir(REPO)
    argv = expand_argv(["bench", "curriculum", *[a for f in files for a in ("--config", f"configs/{f}")]])
    config = build_parser(argv).parse_args(argv).bench.curriculum
    arms = [arm if isinstance(arm, Arm) else Arm(**vars(arm)) for arm in config.arms]
    assert config.headline in [arm.name for arm in arms]
    if files[0] == "bench_curriculum_distractor.yaml":
        return  # a follow-up of three seeds, run as it was
    profile = Profile(seeds=config.profile.seeds)
    for arm in arms:
        claim = arm.name in ("INFUSER", "frozen generator", "SPICE variance")
        assert len(arm.seeds_of(profile)) >= (10 if claim else 5), arm.name


def test_a_profile_runs_only_the_arms_it_names(tmp_path, monkeypatch):
    """A smoke profile can run the arms the claim rests on; the gate is kept while both of its arms run."""
    monkeypatch.setattr(curriculum, "_execute", _fake_execute(lambda arm, seed: {"oracle": 0.2}.get(arm, 0.0) + seed / 100))
    arms = [Arm("INFUSER"), Arm("frozen"), Arm("oracle", reference=True), Arm("R-Zero", seeds=3)]
    result = bench_curriculum(arms, str(REPO / "configs" / "toy.yaml"),
                              profile=Profile(seeds=[0, 1], arms=["INFUSER", "frozen", "oracle"]),
                              metric="eval/heldout_exact", oracle="oracle", frozen="frozen",
                              cache_dir=str(tmp_path / "cache"), json=str(tmp_path / "bench.json"))
    assert [record.arm for record in result.arms] == ["INFUSER", "frozen", "oracle"]
    assert result.headroom is not None and result.headroom.passed
    without_gate = bench_curriculum(arms, str(REPO / "configs" / "toy.yaml"),
                                    profile=Profile(seeds=[0, 1], arms=["INFUSER", "R-Zero"]),
                                    metric="eval/heldout_exact", oracle="oracle", frozen="frozen",
                                    cache_dir=str(tmp_path / "cache"))
    assert without_gate.headroom is None
    with pytest.raises(ValueError, match=r"full profile: arms must name arms of `arms` and include the headline"):
        bench_curriculum(arms, str(REPO / "configs" / "toy.yaml"), profile=Profile(arms=["frozen", "nope"]),
                         cache_dir=str(tmp_path / "cache"))
