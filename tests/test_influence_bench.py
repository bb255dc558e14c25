"""``infuser bench influence`` end to end on a small toy model, and the pieces it is built from."""

from __future__ import annotations

import json
import math
import textwrap

import lightning as L
import pytest
import torch

from infuser import cli
from infuser.bench import influence as bench
from infuser.toy.base_model import ToyBaseConfig, ensure_toy_base
from infuser.toy.world import ToyWorld

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
        warmup_steps: 1
        questions_per_step: 8
        target_questions: 12
        candidate_questions: 16
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
        assert -1 <= record["spearman"] <= 1 and 0 <= record["sign_agreement"] <= 1
        assert record["seconds_per_candidate"] > 0 and math.isfinite(record["cost_vs_floor"])
        assert math.isfinite(record["cost_vs_full_floor"])
        assert record["peak_mb"] >= 0 and record["candidates"] == len(record["scores"]) == len(record["effects"])
        assert set(record["spearman_at"]) == {"1e-06"}
    assert [r["lora"] is not None for r in records] == [False, False, False, True]
    assert records[3]["trainable_parameters"] < records[0]["trainable_parameters"]
    assert sorted(p.name for p in out.parent.glob("*.png")) == [
        "influence_lora-grad.png", "influence_optimizer-aware-dot.png", "influence_optimizer-aware.png",
        "influence_tracin.png"]
    # In the linear regime (a tiny step) the preconditioned dot *is* the first-order effect of the
    # real AdamW step, momentum and weight decay having been subtracted with the null step.
    assert records[1]["spearman_at"]["1e-06"] > 0.9


def test_objective_at_the_current_policy_is_the_surrogate_loss(small_model_dir):
    """The measured objective is the one whose gradient the estimators use as g_T."""
    config = bench.bench_influence.__defaults__[0]  # the default Solver settings
    config = type(config)(model=type(config.model)(name_or_path=str(small_model_dir)), optimizer=config.optimizer,
                          sampling=config.sampling)
    plan = bench._Plan(warmup_steps=0, questions_per_step=4, target_questions=12, candidate_questions=12,
                       answers_per_question=4, further_learning_rates=(), seed=0)
    setting = bench._setting(L.Fabric(accelerator="cpu", devices=1), config, ToyWorld(), plan)
    solver, target = setting.solver, setting.target
    with torch.no_grad():
        logps, _ = bench.completion_logps(solver.model, target.batch, solver.config.sampling.temperature)
        assert bench._objective(solver, target, logps) == pytest.approx(float(solver.surrogate_loss(target)), rel=1e-5)
    assert setting.effects.shape == (len(setting.candidates),) and bool(torch.isfinite(setting.effects).all())


def test_spearman_uses_average_ranks_for_ties():
    assert bench.spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])) == pytest.approx(1)
    assert bench.spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1)
    # ranks (1.5, 1.5, 3) vs (1, 2, 3): Pearson of the ranks
    assert bench.spearman(torch.tensor([5.0, 5.0, 7.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(0.8660254)
    assert math.isnan(bench.spearman(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])))
    assert bench.sign_agreement(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.5, 0.1])) == pytest.approx(2 / 3)
