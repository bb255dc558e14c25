"""What a run prints into a log and leaves in its folder, through the real command in a fresh process.

Two iterations of the shrunken toy configuration (as tests/test_end_to_end.py), output redirected
as a cluster job's would be: one plain line per stage, one seed message, no library bars; the
learning curves in plots/; exported weights readable like any file; the figure of two runs; and a
resume that does not warn about losing the log it rebuilds.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infuser.cli import main
from infuser.plots import read_run

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _arguments(model_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", "configs/toy.yaml",
        f"--generator.model.name_or_path={model_dir}", f"--solver.model.name_or_path={model_dir}",
        "--loop.iterations=2", "--loop.documents_per_iteration=3", "--loop.questions_per_document=2",
        "--loop.answers_per_question=3", "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
        "--target_set.init_args.size=6", "--heldout_set.init_args.size=6", f"--run_dir={run_dir}", *extra,
    ]


def _fit(model_dir: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infuser.cli", *_arguments(model_dir, run_dir, *extra)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(0o022))


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("output") / "run"
    result = _fit(tiny_model_dir, run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir, result.stderr


@pytest.mark.slow
def test_a_log_gets_plain_lines_and_no_library_noise(finished_run):
    _, log = finished_run
    assert "\r" not in log
    assert log.count("Seed set to 42") == 1
    assert "Loading weights" not in log and "Writing model shards" not in log
    lines = log.splitlines()
    for expected in ("infuser: iteration 1/2: target", "infuser: iteration 1/2: generate",
                     "infuser: iteration 2/2: evaluate", "infuser: iteration 2/2 done in "):
        assert any(expected in line for line in lines), expected


@pytest.mark.slow
def test_the_run_folder_holds_curves_samples_and_readable_weights(finished_run):
    run_dir, _ = finished_run
    assert (run_dir / "plots" / "learning_curves.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["iter_00001.jsonl", "iter_00002.jsonl"]
    for role in ("generator", "solver"):
        weights = run_dir / "final" / role / "model.safetensors"
        assert stat.S_IMODE(weights.stat().st_mode) == 0o644, oct(weights.stat().st_mode)
    record = read_run(run_dir)
    assert sorted(record.rows) == [0, 1, 2] and "eval/heldout_accuracy" in record.rows[0]


@pytest.mark.slow
def test_each_exported_role_has_a_model_card_whose_loading_code_works(finished_run):
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    for role in ("generator", "solver"):
        card = (run_dir / "final" / role / "README.md").read_text()
        assert f"# infuser {role}: " in card and "| target accuracy |" in card and "| `seed` | `42` |" in card
    assert AutoModelForCausalLM.from_pretrained(run_dir / "final" / "solver").config.num_hidden_layers == 1


@pytest.mark.slow
def test_the_run_folder_holds_the_configuration_print_config_prints(finished_run, tiny_model_dir):
    run_dir, _ = finished_run
    printed = subprocess.run([sys.executable, "-m", "infuser.cli", *_arguments(tiny_model_dir, run_dir),
                              "--print_config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (run_dir / "config.yaml").read_text() == printed.stdout


@pytest.mark.slow
def test_plot_compares_runs_on_one_figure(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    assert main(["plot", str(run_dir), str(other), "--output", str(tmp_path / "figures")]) == 0
    figure = tmp_path / "figures" / "learning_curves.png"
    assert capsys.readouterr().out == f"wrote {figure}\n"
    assert figure.read_bytes().startswith(PNG)


def test_plot_of_a_folder_without_a_run_names_the_file(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"infuser: error: {tmp_path / 'logs' / 'metrics.csv'}: no such file; plot a run_dir of `infuser fit` "
        "(with the csv logger, trainer.loggers: [csv])\n")


@pytest.mark.slow
def test_resume_does_not_warn_about_the_log_it_rebuilds(finished_run, tiny_model_dir, tmp_path):
    run_dir, _ = finished_run
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    result = _fit(tiny_model_dir, resumed, "--loop.iterations=3", "--ckpt_path=last")
    assert result.returncode == 0, result.stderr
    assert "will be deleted" not in result.stderr
    assert "configuration differs" not in result.stderr  # ckpt_path, run_dir and loop.iterations do not count
    assert sorted(read_run(resumed).rows) == [0, 1, 2, 3]
