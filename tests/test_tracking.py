"""W&B and MLflow through Lightning's loggers, offline and not mocked: metrics, the samples table
per iteration, and one line when a logger's package is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infuser.cli import main
from infuser.config import ConfigurationError
from infuser.tracking import check_installed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("logger", "extra"), [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_a_missing_logger_package_is_one_line_naming_the_key_and_the_install(logger, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, logger, None)  # what `import` sees when the package is absent
    with pytest.raises(ConfigurationError) as refused:
        check_installed(["csv", logger])
    assert str(refused.value) == (f"trainer.loggers: `{logger}` needs the {logger} package, which is not installed; "
                                  f"pip install 'infuser[{extra}]'")


def test_fit_refuses_a_missing_logger_before_any_model_loads(monkeypatch, tmp_path, capsys, no_model_loading):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = main(["fit", "--config", str(ROOT / "configs/toy.yaml"), "--trainer.loggers=[csv,mlflow]",
                 f"--run_dir={tmp_path}"])
    assert code == 2
    assert capsys.readouterr().err == ("infuser: error: trainer.loggers: `mlflow` needs the mlflow package, which is "
                                       "not installed; pip install 'infuser[mlflow]'\n")


@pytest.mark.slow
def test_wandb_offline_and_mlflow_file_store_get_metrics_and_a_samples_table_per_iteration(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                   "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                   "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT"):
        environment.pop(variable, None)
    arguments = [  # the bundled toy base (the tiny test base rarely has a question with signal to log)
        "fit", "--config", "configs/toy.yaml", "--trainer.loggers=[csv,wandb,mlflow]",
        "--loop.iterations=2", "--loop.documents_per_iteration=3", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=6", f"--run_dir={run_dir}",
    ]
    result = subprocess.run([sys.executable, "-m", "infuser.cli", *arguments], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr
    logged = [json.loads(line) for line in (run_dir / "samples" / "iter_00002.jsonl").read_text().splitlines()]

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what the run set for its own store

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    assert logged, "the bundled base logs completions"
    (run,) = client.search_runs([client.get_experiment_by_name("infuser").experiment_id])
    assert run.info.run_name == "run"
    history = client.get_metric_history(run.info.run_id, "eval/target_accuracy")
    assert [point.step for point in history] == [0, 1, 2]
    table = json.loads((Path(run.info.artifact_uri.removeprefix("file://")) / "samples" / "iter_00002.json")
                       .read_text())
    assert table["columns"] == list(logged[0]) and len(table["data"]) == len(logged)

    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    tables = sorted((offline / "files" / "media" / "table").glob("samples_*.table.json"))
    assert len(tables) == 2
    content = json.loads(tables[-1].read_text())
    assert content["columns"] == list(logged[0]) and len(content["data"]) == len(logged)
    (records,) = offline.glob("run-*.wandb")  # the offline run's record log (`wandb sync` uploads it)
    assert b"eval/target_accuracy" in records.read_bytes() and b"solver/reward" in records.read_bytes()
