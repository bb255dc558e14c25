"""Two outer iterations of a shrunken toy configuration, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infuser.cli import main


def _args(model_dir, run_dir, *extra):
    return [
        "fit", "--config", "configs/toy.yaml",
        f"--generator.model.name_or_path={model_dir}", f"--solver.model.name_or_path={model_dir}",
        "--loop.iterations=2", "--loop.documents_per_iteration=3", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=6", f"--run_dir={run_dir}", *extra,
    ]


@pytest.mark.slow
def test_two_iterations_write_summary(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    run_dir = tmp_path / "run"
    assert main(_args(tiny_model_dir, run_dir)) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("iterations", "target_accuracy_start", "target_accuracy_end", "heldout_accuracy_start",
                "heldout_accuracy_end", "seconds_total", "seconds_by_stage"):
        assert key in summary
    assert summary["iterations"] == 2
    assert set(summary["seconds_by_stage"]) >= {"target", "generate", "solve", "influence", "solver_update"}
    assert sorted(p.name for p in (run_dir / "questions").iterdir()) == ["iter_00001.jsonl", "iter_00002.jsonl"]
    rows = [json.loads(line) for line in (run_dir / "questions" / "iter_00001.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("influence" in row and "valid" in row for row in rows)
    assert len(list((run_dir / "checkpoints").glob("iter_*.ckpt"))) == 2
    metrics = (run_dir / "logs" / "metrics.csv").read_text()
    assert "generator/valid_rate" in metrics and "eval/heldout_accuracy" in metrics


def test_print_config_round_trips(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    with pytest.raises(SystemExit):
        main(["fit", "--config", "configs/toy.yaml", "--loop.iterations=3", "--print_config"])
    printed = capsys.readouterr().out
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(saved), "--print_config"])
    assert capsys.readouterr().out == printed
    assert "iterations: 3" in printed


@pytest.mark.parametrize("argument, expected", [
    ("--loop.iteratons=3", "loop.iteratons"),
    ("--loop.iterations=three", "loop.iterations"),
    ("--loop.iterations=0", "loop.iterations"),
    ("--influence.init_args.mode=sideways", "mode"),
])
def test_bad_configuration_is_one_line(argument, expected, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    assert main(["fit", "--config", "configs/toy.yaml", argument]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("infuser: error:") and "\n" not in err and expected in err


def test_unknown_key_in_yaml_names_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  iteratons: 3\n")
    assert main(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "iteratons" in err


def test_eval_subcommand_scores_predictions(tmp_path):
    """`infuser eval --predictions` through the real CLI: every gold answer right, one wrong."""
    fixture = Path(__file__).resolve().parent / "eval" / "fixtures" / "olympiad_mini.jsonl"
    rows = [json.loads(line) for line in fixture.read_text().splitlines() if line.strip()]
    predictions = tmp_path / "preds.jsonl"
    lines = [{"id": row["id"], "output": f"So the final answer is $\\boxed{{{row['final_answer'][0]}}}$"}
             for row in rows]
    lines[0]["output"] = "I do not know."
    predictions.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    config = tmp_path / "eval.yaml"
    config.write_text(f"benchmarks:\n  - name: olympiadbench\n    path: {fixture}\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["eval", "--config", str(config), "--predictions", str(predictions)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["overall"]["items"] == len(rows)
    assert results["overall"]["accuracy_micro"] == pytest.approx((len(rows) - 1) / len(rows))


def test_input_errors_from_fit_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    missing = tmp_path / "nope.jsonl"
    assert main(["fit", "--config", "configs/toy.yaml", "--target_set=JsonlQuestions",
                 f"--target_set.init_args.path={missing}", f"--run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("infuser: error:") and "nope.jsonl" in err and "\n" not in err


def test_target_set_subcommand_writes_a_loadable_target_set(tmp_path):
    fixture = Path(__file__).resolve().parent / "eval" / "fixtures" / "supergpqa_mini.jsonl"
    output = tmp_path / "target.jsonl"
    assert main(["target-set", f"--path={fixture}", f"--output={output}", "--n=3", "--discipline=null"]) == 0
    from infuser.data.question_sets import JsonlQuestions

    assert len(JsonlQuestions(str(output)).load()) == 3
