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


def test_the_floor_column_joins_each_stage(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(loop_speed, "_run", lambda config, threads, run_dir: {
        "wall": 10.0, "loop": 8.0, "stages": {"evaluate": 4.0, "checkpoint": 1.0}})
    monkeypatch.setattr(loop_speed, "floors", lambda configs: {
        "configs/rules.yaml": {"stages": {"evaluate": {"floor_seconds": 2.0}, "checkpoint": {"floor_seconds": 0.0}}}})
    loop_speed.main(["--configs", "configs/rules.yaml", "--repeats", "1", "--floor", "--json", str(tmp_path / "s.json")])
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["evaluate"][-2:] == ["2.00", "2.0"] and lines["checkpoint"][-1] == "-"
    assert json.loads((tmp_path / "s.json").read_text())["floor"]["configs/rules.yaml"]


def test_stage_floor_counts_each_stages_tokens_by_whether_a_backward_follows(tmp_path):
    from benchmarks import stage_floor

    result = stage_floor.measure("configs/rules.yaml", 1, rows=4, length=8, repeats=1, overrides=[
        "--loop.documents_per_iteration", "4", "--loop.eval_every", "0", "--trainer.threads", "1",
        "--heldout_set.init_args.size", "8", "--target_set.init_args.size", "8"])
    stages = result["stages"]
    for sampled_only in ("generate", "solve", "evaluate"):
        assert stages[sampled_only]["no_grad_tokens"] > 0 and stages[sampled_only]["grad_tokens"] == 0
    for differentiated in ("solver_update", "generator_update", "influence"):
        assert stages[differentiated]["grad_tokens"] > 0
    assert stages["target"]["no_grad_tokens"] > 0  # its samples; a target gradient needs a question with signal
    costs = result["seconds_per_token"]
    assert costs["forward"] > 0 and costs["forward_backward"] > 0
    for row in stages.values():
        expected = row["no_grad_tokens"] * costs["forward"] + row["grad_tokens"] * costs["forward_backward"]
        assert row["floor_seconds"] == expected
