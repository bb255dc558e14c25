"""Help that reads as plain text, a component list without arguments, YAML errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from infuser import registry
from infuser.cli import main
from infuser.cli_help import plain_text

ROOT = Path(__file__).resolve().parents[1]


def _help(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    with pytest.raises(SystemExit) as exit:
        main([*arguments, "--help"])
    assert exit.value.code == 0
    return capsys.readouterr().out


def test_plain_text_drops_restructuredtext_markup():
    assert plain_text("``null`` keeps :class:`~infuser.loop.InfuserLoop` and :mod:`infuser.sharding` "
                      "(see ``a``/``b``)") == "null keeps InfuserLoop and infuser.sharding (see a/b)"


def test_fit_help_is_plain_text_with_sections_named_by_key(capsys):
    text = _help(capsys, "fit")
    assert "``" not in text and ":class:" not in text
    usage = "usage: infuser [options] fit [-h] [--config FILE] [--print_config] [--KEY VALUE ...]"
    assert text.splitlines()[0] == usage
    for section in ("solver.model: ", "generator.update.loss: ", "loop: the schedule", "trainer: "):
        assert any(line.startswith(section) for line in text.splitlines()), section


def test_list_help_names_every_kind(capsys):
    text = " ".join(_help(capsys, "list").split())
    assert f"one of {', '.join(registry.KINDS)}; every kind when left out" in text
    assert "generator_reward" in registry.KINDS


def test_list_without_a_kind_lists_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, definition in registry.KINDS.items():
        assert f"{kind} components (entry-point group {definition.group}):" in out
    assert "spice_variance" in out and "(width=0.02)" in out and "``" not in out


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nloop:\n  iterations: 2\n   eval_every: 1\n")
    assert main(["fit", "--config", str(bad)]) == 2
    assert capsys.readouterr().err == f"infuser: error: {bad}:4:14: invalid YAML: mapping values are not allowed here\n"
