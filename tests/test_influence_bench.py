"""``infuser bench influence`` end to end on a small toy model, and the pieces it is built from."""

from __future__ import annotations

import json
import math
import statistics
import textwrap

import lightning as L
import pytest
import torch

from infuser import cli
from infuser.bench import influence as bench
from infuser.bench import step_effects
from infuser.data.prompts import PromptTemplates
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps
from infuser.toy.base_model import ToyBaseConfig, ensure_toy_base
from infuser.toy.world import ToyWorld, fact_asked

# Small, but trained enough that the Solver gets toy questions right sometimes (there is no signal
# to benchmark otherwise); a few seconds to build.
SMALL = ToyBaseConfig(examples=3000, epochs=2, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                      batch_size=32, learning_rate=1e-2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This module's many small ops run ~10x faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    return ensure_toy_base(SMALL, cache_dir=tmp_path_factory.mktemp("small-toy"))


def test_bench_cli_writes_table_json_and_plots(small_model_dir, tmp_path, capsys):
    (tmp_path / "bench.yaml").write_text(textwrap.dedent(f"""
        solver:
          model: {{name_or_path: {str(small_model_dir)!r}}}
          optimizer: {{lr: 1.0e-3}}
          sampling: {{max_new_tokens: 12}}
        profile: {{states: [0, 1], seeds: [0, 1], candidate_questions: 16}}
        quick_profile: {{states: [0], seeds: [0, 1], candidate_questions: 16}}
        questions_per_step: 8
        target_questions: 12
        answers_per_question: 4
        further_learning_rates: [1.0e-6]
        repeats: 1
        estimators:
          - {{name: optimizer_aware, estimator: optimizer_aware}}
          - name: optimizer_aware (dot)
            estimator: {{class_path: optimizer_aware, init_args: {{mode: preconditioned_dot}}}}
          - {{name: tracin, estimator: TracInInfluence}}
          - name: lora_grad
            estimator: {{class_path: lora_grad, init_args: {{projection_dim: 16}}}}
            lora: {{r: 2, alpha: 4}}
    """))
    out = tmp_path / "out" / "influence.json"
    assert cli.main(["bench", "influence", "--config", str(tmp_path / "bench.yaml"), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == ["optimizer_aware", "optimizer_aware (dot)", "tracin", "lora_grad"]
    for record in records:
        assert record["name"] in table
        assert record["seeds"] == [0, 1] and record["states"] == [0, 1]
        assert [(m["seed"], m["state"]) for m in record["settings"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        rhos = [m["spearman"] for m in record["settings"]]
        assert record["spearman"] == pytest.approx(sum(rhos) / len(rhos))
        interval = record["spearman_ci"]
        assert interval["mean"] == pytest.approx(record["spearman"])
        assert interval["ci_low"] <= interval["mean"] <= interval["ci_high"]
        assert -1 <= record["spearman_accuracy"] <= 1 and 0 <= record["sign_agreement"] <= 1
        assert not record["retest_candidates"] > 1 and -1 <= record["retest_target"] <= 1  # NaN: too few in both draws
        assert set(record["by_state"]) == {"0", "1"}
        for state, summary in record["by_state"].items():
            at_state = [m["spearman"] for m in record["settings"] if str(m["state"]) == state]
            assert summary["spearman"]["mean"] == pytest.approx(sum(at_state) / len(at_state))
            assert set(summary["diagnostics"]) == {"candidate_share_of_v", "sign_likeness", "clipped", "null_share",
                                                   "effect_retest"}
            assert not abs(summary["diagnostics"]["effect_retest"]) > 1  # NaN: constant effects
        for measured in record["settings"]:
            assert measured["candidates"] == len(measured["scores"]) == len(measured["effects"])
            assert len(measured["accuracy_effects"]) == measured["candidates"]
        assert record["seconds_per_candidate"] > 0 and math.isfinite(record["cost_vs_floor"])
        assert math.isfinite(record["cost_vs_full_floor"]) and record["peak_mb"] >= 0
        assert set(record["spearman_at"]) == {"1e-06"}
    # Before any update the second moment is empty: the step is sign-like and the candidate's own
    # g^2 is all of v'.
    diagnostics = records[0]["by_state"]["0"]["diagnostics"]
    assert diagnostics["candidate_share_of_v"] == pytest.approx(1.0)
    assert records[0]["vs_baseline"] is None and records[0]["baseline"] is None
    for record in records[1:]:
        baseline = [statistics.fmean(m["spearman"] for m in records[0]["settings"] if m["seed"] == s) for s in (0, 1)]
        own = [statistics.fmean(m["spearman"] for m in record["settings"] if m["seed"] == s) for s in (0, 1)]
        assert record["baseline"] == "optimizer_aware"
        assert record["vs_baseline"]["mean"] == pytest.approx(statistics.fmean(own) - statistics.fmean(baseline))
    assert [r["lora"] is not None for r in records] == [False, False, False, True]
    assert records[3]["trainable_parameters"] < records[0]["trainable_parameters"]
    assert sorted(p.name for p in out.parent.glob("*.png")) == [
        "influence_lora-grad.png", "influence_optimizer-aware-dot.png", "influence_optimizer-aware.png",
        "influence_tracin.png"]
    # In the linear regime (a tiny step) the preconditioned dot *is* the first-order effect of the
    # real AdamW step, momentum and weight decay having been subtracted with the null step.
    assert records[1]["spearman_at"]["1e-06"] > 0.9

    # --quick true runs the quick profile
    quick = tmp_path / "quick" / "influence.json"
    assert cli.main(["bench", "influence", "--config", str(tmp_path / "bench.yaml"), "--quick", "true",
                     "--json", str(quick)]) == 0
    assert json.loads(quick.read_text())[0]["states"] == [0]


def test_same_config_same_figures_whatever_the_thread_count(small_model_dir):
    """The benchmark pins its threads: the thread count it is called with changes no fidelity figure."""
    config = bench.bench_influence.__defaults__[0]
    config = type(config)(model=type(config.model)(name_or_path=str(small_model_dir)), optimizer=config.optimizer,
                          sampling=type(config.sampling)(max_new_tokens=12))
    profile = bench.Profile(states=[1], seeds=[0], candidate_questions=12)
    figures = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        (record,) = bench.bench_influence([bench.BenchEstimator("optimizer_aware", OptimizerAwareInfluence())],
                                          config, profile=profile, questions_per_step=8, target_questions=12,
                                          answers_per_question=4, repeats=1)
        figures.append([(m.scores, m.effects, m.accuracy_effects) for m in record.settings])
        assert torch.get_num_threads() == threads  # restored afterwards
    torch.set_num_threads(1)
    assert figures[0] == figures[1]


def test_objective_at_the_current_policy_is_the_surrogate_loss(small_model_dir):
    """The measured objective is the one whose gradient the estimators use as g_T."""
    config = bench.bench_influence.__defaults__[0]  # the default Solver settings
    config = type(config)(model=type(config.model)(name_or_path=str(small_model_dir)), optimizer=config.optimizer,
                          sampling=config.sampling)
    plan = step_effects.Plan(states=(0,), questions_per_step=4, target_questions=12, candidate_questions=12,
                             answers_per_question=4, further_learning_rates=())
    (setting,) = step_effects.trajectory(L.Fabric(accelerator="cpu", devices=1), config, ToyWorld(), plan, seed=0)
    solver, target = setting.solver, setting.target
    with torch.no_grad():
        logps, _ = completion_logps(solver.model, target.batch, solver.config.sampling.temperature)
        objective = step_effects.target_objective(solver, target, logps)
        assert objective == pytest.approx(float(solver.surrogate_loss(target)), rel=1e-5)
    effects = setting.effects
    assert effects.loss.shape == effects.accuracy.shape == (len(setting.candidates),)
    assert bool(torch.isfinite(effects.loss).all() and torch.isfinite(effects.accuracy).all())


def test_exact_accuracy_is_the_probability_of_the_canonical_answer(small_model_dir):
    """Teacher-forced: the canonical answer's tokens (EOS included) under the Solver, one row per question."""
    config = bench.bench_influence.__defaults__[0]
    config = type(config)(model=type(config.model)(name_or_path=str(small_model_dir)), optimizer=config.optimizer,
                          sampling=config.sampling)
    solver = Solver(config, PromptTemplates())
    questions = ToyWorld().question_set("target", 3, seed=0)
    canonical = step_effects.canonical_answers(solver, ToyWorld(), questions)
    texts = [solver.tokenizer.decode(row[mask.bool()]) for row, mask in zip(canonical.completion_ids,
                                                                            canonical.completion_mask)]
    fact = fact_asked(questions[0].question)
    assert texts[0].startswith(f" {fact.left}") and texts[0].endswith(f"\\boxed{{{fact.value}}}<|endoftext|>")
    probabilities = []
    for question in questions:  # one question at a time, from its own prompt
        one = step_effects.canonical_answers(solver, ToyWorld(), [question])
        probabilities.append(step_effects.canonical_accuracy(solver, one))
    assert step_effects.canonical_accuracy(solver, canonical) == pytest.approx(sum(probabilities) / 3, rel=1e-4)
    assert 0 < min(probabilities) and max(probabilities) < 1


def test_sign_agreement_counts_matching_signs():
    assert bench.sign_agreement(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.5, 0.1])) == pytest.approx(2 / 3)
