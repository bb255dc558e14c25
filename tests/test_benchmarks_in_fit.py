"""``loop.eval_benchmarks``: ``infuser eval``'s harness on the Solver during ``infuser fit``, on the
bundled benchmark rows the eval tests use: the same scores as ``infuser eval`` of the same model,
logged as ``eval/<benchmark>/accuracy`` every N iterations and at the end, and drawn."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from infuser.cli import main
from infuser.config import BenchmarkConfig, BenchmarkEvalConfig, EvalSamplingConfig, RoleConfig
from infuser.data.prompts import PromptTemplates
from infuser.eval.during_fit import BenchmarkEvaluation
from infuser.eval.run import EvalModelConfig, evaluate
from infuser.eval.score import JudgeConfig
from infuser.model_config import TOY_MODEL_ID, ModelConfig
from infuser.roles.solver import Solver

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "eval" / "fixtures"
BENCHMARKS = [BenchmarkConfig("olympiadbench", path=str(FIXTURES / "olympiad_mini.jsonl"), limit=3),
              BenchmarkConfig("supergpqa", path=str(FIXTURES / "supergpqa_mini.jsonl"), prompt="boxed", limit=4)]
GREEDY = EvalSamplingConfig(temperature=0.0, max_new_tokens=12, num_samples=1)


def test_due_every_n_iterations_and_at_the_end():
    config = BenchmarkEvalConfig(BENCHMARKS, every=2)
    assert [i for i in range(1, 6) if config.due(i, 5)] == [2, 4, 5]
    assert [i for i in range(1, 4) if BenchmarkEvalConfig(BENCHMARKS, every=0).due(i, 3)] == [3]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"benchmarks": []}, "loop.eval_benchmarks.benchmarks: list at least one benchmark"),
    ({"benchmarks": BENCHMARKS[1:] * 2}, "labels must be unique"),
    ({"benchmarks": BENCHMARKS, "every": -1}, "every must be at least 0"),
])
def test_bad_settings_name_the_key(arguments, message):
    with pytest.raises(ValueError, match=message):
        BenchmarkEvalConfig(**arguments)


def test_a_missing_benchmark_file_names_the_key_before_any_model_loads(tmp_path, capsys, no_model_loading):
    missing = tmp_path / "nowhere.jsonl"
    code = main(["fit", "--config", str(ROOT / "configs/toy.yaml"), f"--run_dir={tmp_path / 'run'}",
                 f"--loop.eval_benchmarks={{benchmarks: [{{name: supergpqa, path: {missing}}}]}}"])
    assert code == 2
    assert capsys.readouterr().err == (f"infuser: error: loop.eval_benchmarks.benchmarks[0] (supergpqa): {missing}: "
                                       "no such file\n")


def test_the_solver_scores_what_infuser_eval_scores_for_the_same_model(tmp_path):
    judge = JudgeConfig(item_timeout_s=10.0)
    solver = Solver(RoleConfig(model=ModelConfig(name_or_path=TOY_MODEL_ID)), PromptTemplates())
    during = BenchmarkEvaluation(BenchmarkEvalConfig(BENCHMARKS, sampling=GREEDY, batch_size=4), judge)
    scores = during(solver, torch.Generator().manual_seed(0))
    results = evaluate(BENCHMARKS, model=EvalModelConfig(TOY_MODEL_ID, chat_template=False, dtype="float32",
                                                         device="cpu", batch_size=4),
                       sampling=GREEDY, judge=judge, output_dir=str(tmp_path))
    assert scores == {f"eval/{name}/accuracy": results.benchmark(name).accuracy
                      for name in ("olympiadbench", "supergpqa")}


@pytest.mark.slow
def test_fit_logs_benchmark_accuracy_every_n_iterations_and_at_the_end_and_plots_it(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    benchmarks = ", ".join(f"{{name: {b.name}, path: {b.path}, limit: {b.limit}}}" for b in BENCHMARKS)
    arguments = [
        "fit", "--config", "configs/toy.yaml",
        "--loop.iterations=3", "--loop.documents_per_iteration=3", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=6", f"--run_dir={run_dir}",
        f"--loop.eval_benchmarks={{benchmarks: [{benchmarks}], every: 2, sampling: {{max_new_tokens: 8}}}}",
    ]
    assert main(arguments) == 0
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = {int(float(row["step"])): row for row in rows}
    for name in ("olympiadbench", "supergpqa"):
        steps = sorted(step for step, row in logged.items() if row.get(f"eval/{name}/accuracy"))
        assert steps == [2, 3]  # every 2 iterations, and the last
        assert all(0.0 <= float(logged[step][f"eval/{name}/accuracy"]) <= 1.0 for step in steps)
    assert (run_dir / "plots" / "learning_curves.png").is_file()


def test_infuser_plot_draws_each_benchmark_beside_the_target_and_held_out_accuracy():
    from infuser.plots import RunRecord, draw

    rows = {0: {"eval/target_accuracy": 0.2}, 2: {"eval/target_accuracy": 0.3, "eval/supergpqa/accuracy": 0.25},
            3: {"eval/target_accuracy": 0.4, "eval/supergpqa/accuracy": 0.5, "eval/olympiadbench/accuracy": 0.1}}
    accuracy_panel = draw([RunRecord(name="run", rows=rows)]).axes[0]
    lines = {line.get_label(): line for line in accuracy_panel.get_lines()}
    assert list(lines["supergpqa"].get_xdata()) == [2, 3] and lines["supergpqa"].get_linestyle() == "-."
    assert list(lines["olympiadbench"].get_ydata()) == [0.1] and lines["olympiadbench"].get_linestyle() == ":"
