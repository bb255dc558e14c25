"""``infuser bench curriculum``: equal budgets enforced, runs cached, interrupted runs resumed."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from infuser.bench import curriculum
from infuser.bench.common import student_t_quantile
from infuser.bench.curriculum import Arm, Profile, bench_curriculum, code_digest
from infuser.bench.curriculum_report import (
    HEADROOM_CONFIDENCE,
    ArmRecord,
    Headroom,
    curve_area,
    first_reaching,
    headroom,
    paired_vs,
    verdict,
)
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
    assert result.best == "INFUSER" and result.rival == "SPICE" and result.distinguishable and result.n == 5
    assert result.statement.startswith("best arm: INFUSER") and "runner-up SPICE" in result.statement
    assert "distinguishable beyond seed noise" in result.statement
    noisy = verdict([_record("INFUSER", [g + d for g, d in zip(spice, [0.2, -0.15, 0.1, -0.1, 0.2])]),
                     _record("SPICE", spice)], "INFUSER")
    assert noisy.best == "INFUSER" and not noisy.distinguishable  # the per-seed differences straddle 0
    assert "NOT distinguishable" in noisy.statement


def test_verdict_names_the_best_arm_when_it_is_not_the_headline():
    """Ranked by the mean paired gain against the headline: the arm furthest ahead of it is best,
    and the headline is compared with that arm, not with the runner-up behind it."""
    frozen = [0.1 + e for e in SEED_EFFECT]
    records = [_record("INFUSER", [g + 0.05 for g in frozen]), _record("frozen", frozen),
               _record("RL on target", [g + 0.10 + 0.001 * i for i, g in enumerate(frozen)]),
               _record("close", [g + 0.06 + 0.03 * (-1) ** i for i, g in enumerate(frozen)], seeds=[0, 1, 2, 3])]
    result = verdict(records, "INFUSER")
    assert result.best == result.rival == "RL on target" and result.distinguishable
    assert result.difference.mean == pytest.approx(-0.052)
    assert result.statement.startswith("best arm: RL on target (") and ", not INFUSER (" in result.statement
    assert "INFUSER is behind it beyond seed noise" in result.statement
    tied = verdict(records[:2] + records[3:], "INFUSER")  # ahead of INFUSER by 0.01 on average, but noisy
    assert tied.best == "close" and not tied.distinguishable and "INFUSER is NOT distinguishable" in tied.statement


def test_no_verdict_below_three_seeds_and_none_without_a_gate():
    two = verdict([_record("INFUSER", [0.3, 0.31]), _record("SPICE", [0.1, 0.12])], "INFUSER")
    assert not two.distinguishable and two.statement.startswith("no verdict: INFUSER and SPICE share 2 seed(s)")
    assert "at least 3" in two.statement
    frozen = [0.1 + e for e in SEED_EFFECT]
    records = [_record("INFUSER", [g + 0.05 for g in frozen]), _record("frozen", frozen),
               _record("oracle", frozen, reference=True)]
    closed = verdict(records, "INFUSER", headroom(records, "oracle", "frozen"))
    assert closed.best == "INFUSER" and "the headroom gate did not pass" in closed.statement
    assert verdict([_record("INFUSER", [0.1]), _record("ref", [0.2], reference=True)], "INFUSER") is None


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
    assert gate.difference > gate.threshold * gate.standard_error
    noisy = [_record("oracle", [g + d for g, d in zip(frozen, [0.05, -0.04, 0.03, 0.0, -0.02])]),
             _record("frozen", frozen)]
    gate = headroom(noisy, "oracle", "frozen")
    assert not gate.passed and "the world has no room for any curriculum" in gate.verdict
    for gains in ([0.5], [0.5, 0.6]):
        few = headroom([_record("oracle", gains), _record("frozen", [0.1] * len(gains))], "oracle", "frozen")
        assert not few.passed and few.n == len(gains) and "undecided" in few.verdict and "at least 3" in few.verdict


def test_the_gate_takes_the_t_quantile_of_its_degrees_of_freedom():
    """3 normal standard errors' one-sided confidence, at n - 1 degrees of freedom: 19.2 standard
    errors with 3 seeds, 4.09 with 10, toward 3 with many. A difference of 5 standard errors passes
    over 10 seeds but not over 3."""
    assert HEADROOM_CONFIDENCE == pytest.approx(0.998650101968)

    def gate(n: int) -> Headroom:
        noise = [(-1) ** i for i in range(n)]  # mean 0 (n even) or 1/n (n odd); the difference is set below
        scale = 0.01 / (statistics.stdev(noise) / math.sqrt(n))  # one standard error = 0.01
        differences = [0.05 + scale * (x - statistics.fmean(noise)) for x in noise]
        return headroom([_record("oracle", [0.1 + d for d in differences]), _record("frozen", [0.1] * n)],
                        "oracle", "frozen")

    many, three = gate(10), gate(3)
    assert many.standard_error == pytest.approx(0.01) and three.standard_error == pytest.approx(0.01)
    assert many.threshold == pytest.approx(student_t_quantile(HEADROOM_CONFIDENCE, 9)) and many.passed
    assert three.threshold == pytest.approx(19.2067, abs=1e-3) and not three.passed
    assert "needs more than 19.2, the t quantile at 2 degrees of freedom" in three.verdict


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
        metric="eval/heldout_exact", reach=0.45, oracle="oracle", frozen="frozen", cache_dir=str(tmp_path / "cache"),
        json=str(output))
    saved = json.loads(output.read_text())
    assert saved["reach"] == 0.45
    assert [step is None or step == 2 for step in saved["arms"][0]["iterations_to_reach"]] == [True] * 5
    assert saved["arms"][0]["heldout_aucs"] == pytest.approx([0.4 + (0.05 + e) / 2 for e in SEED_EFFECT])
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
    assert "verdict: best arm: INFUSER" in out and saved["verdict"]["best"] == "INFUSER"
    assert "iterations to 0.45" in out and "AUC" in out
    assert saved["verdict"]["rival"] == "R-Zero" and saved["verdict"]["n"] == 3
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


REVIEWER_PROFILES = [["bench_curriculum_rules.yaml"],
                     ["bench_curriculum_rules.yaml", "bench_curriculum_rules_checked.yaml"],
                     ["bench_curriculum_rules_sizes.yaml"],
                     *[["bench_curriculum_rules_sizes.yaml", f"bench_curriculum_rules_size{n}.yaml"] for n in (4, 8, 16)],
                     ["bench_curriculum_rules_sizes.yaml", "bench_curriculum_rules_narrow.yaml"],
                     ["bench_curriculum_rules_mirror.yaml"],
                     ["bench_curriculum_rules_robust.yaml"],
                     ["bench_curriculum_rules_robust.yaml", "bench_curriculum_rules_robust_lr1e-4.yaml"]]


def _bench_config(files: list[str]):
    argv = expand_argv(["bench", "curriculum", *[a for f in files for a in ("--config", f"configs/{f}")]])
    config = build_parser(argv).parse_args(argv).bench.curriculum
    arms = [arm if isinstance(arm, Arm) else Arm(**vars(arm)) for arm in config.arms]
    return config, arms


def _profile(parsed) -> Profile:
    return parsed if isinstance(parsed, Profile) else Profile(**vars(parsed))


@pytest.mark.parametrize("files", [["bench_curriculum.yaml"], ["bench_curriculum_distractor.yaml"], *REVIEWER_PROFILES])
def test_the_bundled_benchmarks_parse(files, monkeypatch):
    """Every bundled benchmark parses; the claim's benchmarks run 10 seeds of the claim's arms (the
    reviewer baselines' INFUSER + target and Solver RL on target among them), 5 of the rest."""
    monkeypatch.chdir(REPO)
    config, arms = _bench_config(files)
    assert config.headline in [arm.name for arm in arms]
    if files[0] == "bench_curriculum_distractor.yaml":
        return  # a follow-up of three seeds, run as it was
    profile = _profile(config.profile)
    assert len(_profile(config.quick_profile).seeds) >= 3  # the gate and the verdict need 3
    claim = ("INFUSER", "frozen generator", "SPICE variance", "INFUSER + target", "Solver RL on target")
    for arm in arms:
        main_arm = arm.name in claim and not arm.reference and len(profile.seeds) >= 10
        assert len(arm.seeds_of(profile)) >= (10 if main_arm else 5), arm.name


@pytest.mark.parametrize("files", REVIEWER_PROFILES, ids=lambda files: "+".join(files))
def test_every_arm_of_the_reviewer_profiles_plans_a_valid_fit(files, monkeypatch, tmp_path):
    """Planned offline, every arm's ``infuser fit`` command of the full and the quick profile parses,
    with the run's seed as its world instance; nothing runs."""
    monkeypatch.chdir(REPO)
    config, arms = _bench_config(files)
    for parsed in (config.profile, config.quick_profile):
        profile = _profile(parsed)
        chosen = [arm for arm in arms if profile.arms is None or arm.name in profile.arms]
        for arm in chosen:
            if not arm.reference:
                curriculum._check_budget(arm)
            run = curriculum._plan(arm, 7, (REPO / config.base_config).resolve(), profile, tmp_path)
            argv = expand_argv(run.command[3:])
            fit = build_parser(argv).parse_args(argv).fit
            for source in (fit.documents, fit.target_set, fit.heldout_set):
                assert source.init_args.world_seed == 7, (arm.name, files)


def test_area_under_the_curve_and_iterations_to_reach():
    values = [(0, 0.4), (5, 0.6), (10, 0.9)]
    assert curve_area(values) == pytest.approx(((0.4 + 0.6) / 2 * 5 + (0.6 + 0.9) / 2 * 5) / 10)
    assert curve_area([(0, 0.4), (10, 0.9)]) == pytest.approx(0.65) and curve_area([(0, 0.5)]) == 0.5
    assert first_reaching(values, 0.8) == 10 and first_reaching(values, 0.4) == 0
    assert first_reaching(values, 0.95) is None


def test_seed_keys_give_each_seed_its_world_instance(tmp_path):
    """The keys are set to the run's seed in a last layer; without seed_keys the run's command and
    its fingerprint (the cache key) are what they were before the option existed."""
    base = REPO / "configs" / "rules.yaml"
    keys = ["documents.init_args.world_seed", "target_set.init_args.world_seed", "heldout_set.init_args.world_seed"]
    run = curriculum._plan(Arm("INFUSER"), 3, base, Profile(seeds=[3], seed_keys=keys), tmp_path / "seeded")
    layers = [Path(run.command[i + 1]) for i, arg in enumerate(run.command) if arg == "--config"][1:]
    assert len(layers) == 1
    assert yaml.safe_load(layers[0].read_text()) == {name: {"init_args": {"world_seed": 3}}
                                                    for name in ("documents", "heldout_set", "target_set")}
    plain = curriculum._plan(Arm("INFUSER"), 3, base, Profile(seeds=[3]), tmp_path / "plain")
    assert plain.command.count("--config") == 1
    assert plain.fingerprint == hashlib.sha256("\n---\n".join([base.read_text(), "{}\n", "{}\n", "3"]).encode()
                                               ).hexdigest()


def test_a_profile_runs_only_the_arms_it_names(tmp_path, monkeypatch):
    """A smoke profile can run the arms the claim rests on; the gate is kept while both of its arms run."""
    monkeypatch.setattr(curriculum, "_execute", _fake_execute(lambda arm, seed: {"oracle": 0.2}.get(arm, 0.0) + seed / 100))
    arms = [Arm("INFUSER"), Arm("frozen"), Arm("oracle", reference=True), Arm("R-Zero", seeds=3)]
    result = bench_curriculum(arms, str(REPO / "configs" / "toy.yaml"),
                              profile=Profile(seeds=[0, 1, 2], arms=["INFUSER", "frozen", "oracle"]),
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
