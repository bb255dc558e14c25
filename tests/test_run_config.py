"""``run_dir/config.yaml``: what ``--print_config`` prints, and the keys a resumed run changed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from infuser.cli import COMMANDS, _resolved_config, build_parser, expand_argv
from infuser.run_config import CONFIG_FILE, KeyChange, ResolvedConfig, record


def _resolved(*overrides: str) -> ResolvedConfig:
    argv = ["fit", "--config", "configs/toy.yaml", *overrides]
    parser = build_parser(argv)
    return _resolved_config(COMMANDS["fit"].load(), parser.parse_args(expand_argv(argv)).fit)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])


def test_the_resolved_configuration_is_what_print_config_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from infuser.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", "configs/toy.yaml", "--influence=tracin", "--print_config"])
    printed = capsys.readouterr().out
    assert _resolved("--influence=tracin").text == printed
    values = _resolved("--influence=tracin").values()
    assert values["influence.class_path"] == "infuser.influence.tracin.TracInInfluence"
    assert values["run_dir"] is None and values["generator.model.lora"] is None  # null keys are kept


def test_a_resume_names_the_keys_that_changed_and_not_the_resume_keys(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    first = _resolved(f"--run_dir={tmp_path}")
    assert record(first, tmp_path, resuming=False) == []
    assert (tmp_path / CONFIG_FILE).read_text() == first.text
    same = _resolved("--ckpt_path=last", "--loop.iterations=20", f"--run_dir={tmp_path}/moved")
    assert same.changes_since(first) == []
    changed = _resolved("--ckpt_path=last", "--solver.optimizer.lr=0.001", "--trainer.loggers=[csv,tensorboard]")
    with caplog.at_level(logging.WARNING, logger="infuser.run_config"):
        changes = record(changed, tmp_path, resuming=True)
    assert changes == [KeyChange("solver.optimizer.lr", 0.0005, 0.001),
                       KeyChange("trainer.loggers", ["csv"], ["csv", "tensorboard"])]
    assert "solver.optimizer.lr (0.0005 -> 0.001); trainer.loggers (['csv'] -> ['csv', 'tensorboard'])" in caplog.text
    assert (tmp_path / CONFIG_FILE).read_text() == changed.text  # the file describes the run as it continues


def test_a_component_swapped_on_resume_names_its_class_and_arguments(tmp_path: Path) -> None:
    record(_resolved(), tmp_path, resuming=False)
    keys = [change.key for change in record(_resolved("--influence=tracin"), tmp_path, resuming=True)]
    assert "influence.class_path" in keys and "influence.init_args.live" in keys and "influence.init_args.mode" in keys


def test_a_resume_without_a_saved_configuration_just_writes_it(tmp_path: Path) -> None:
    assert record(_resolved(), tmp_path, resuming=True) == []
    assert (tmp_path / CONFIG_FILE).is_file()
