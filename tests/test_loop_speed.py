"""benchmarks/loop_speed.py: medians per configuration and stage, the table and the JSON (the runs
themselves are ``infuser fit`` processes, stood in for here)."""

from __future__ import annotations

import json

from benchmarks import loop_speed


def test_medians_table_and_json(monkeypatch, tmp_path, capsys):
    walls = iter([10.0, 30.0, 20.0])

    def fake_run(config, threads, run_dir):
        wall = next(walls)
        return {"wall": wall, "loop": wall - 5, "stages": {"evaluate": wall / 2, "target": wall / 4}}

    monkeypatch.setattr(loop_speed, "_run", fake_run)
    loop_speed.main(["--configs", "configs/rules.yaml", "--repeats", "3", "--json", str(tmp_path / "speed.json")])
    written = json.loads((tmp_path / "speed.json").read_text())
    result = written["results"]["configs/rules.yaml @ config"]
    assert result["wall_median"] == 20.0 and result["loop_median"] == 15.0
    assert result["stages_median"] == {"evaluate": 10.0, "target": 5.0}
    assert "evaluate" in capsys.readouterr().out
