"""benchmarks/sandbox_speed.py end to end at its smallest: one level, one repeat, two problems."""

from __future__ import annotations

import json

from benchmarks import sandbox_speed


def test_tables_and_json(tmp_path, capsys):
    sandbox_speed.main(["--levels", "plain", "--repeats", "1", "--problems", "2", "--json", str(tmp_path / "s.json")])
    written = json.loads((tmp_path / "s.json").read_text())
    assert set(written["per_program_ms"]) == {"empty program", "HumanEval/0 with its test"}
    assert set(written["per_program_ms"]["empty program"]) == {"python -c", "python -I -S -c", "sandbox plain"}
    assert written["throughput"]["plain"]["2"]["passed"] == 2
    assert "| sandbox plain | 2 |" in capsys.readouterr().out
