"""The research scripts' read-back of results: the target-size sweep and the shadow-estimator summary."""

from __future__ import annotations

import json

import pytest

from benchmarks.research import shadow_influence, target_size_sweep


def _report(gains: dict[str, list[float]], paired: dict[str, dict]) -> dict:
    return {"headline": "INFUSER",
            "arms": [{"arm": arm, "heldout_gains": values, "seeds": list(range(len(values))),
                      "paired_vs": paired if arm == "INFUSER" else {}} for arm, values in gains.items()]}


def test_the_sweep_puts_each_arm_at_each_size(tmp_path, capsys):
    big = _report({"INFUSER": [0.4, 0.5, 0.6], "RL": [0.6, 0.6, 0.6]},
                  {"RL": {"mean": -0.1, "ci_low": -0.3, "ci_high": 0.1, "n": 3}})
    small = _report({"INFUSER": [0.4, 0.4, 0.4], "RL": [0.1, 0.2, 0.3]},
                    {"RL": {"mean": 0.2, "ci_low": 0.0, "ci_high": 0.4, "n": 3}})
    (tmp_path / "64.json").write_text(json.dumps(big))
    (tmp_path / "8.json").write_text(json.dumps(small))
    target_size_sweep.main([f"64={tmp_path / '64.json'}", f"8={tmp_path / '8.json'}", "--json",
                            str(tmp_path / "sweep.json")])
    sweep = json.loads((tmp_path / "sweep.json").read_text())["sweep"]
    assert sweep["RL"]["8"]["gain"] == pytest.approx(0.2) and sweep["INFUSER"]["64"]["gain"] == pytest.approx(0.5)
    assert sweep["RL"]["8"]["ci_low"] < 0.2 < sweep["RL"]["8"]["ci_high"]
    assert sweep["RL"]["64"]["headline_minus_arm"]["mean"] == -0.1
    assert sweep["INFUSER"]["8"]["headline_minus_arm"] is None  # no pairing with itself
    out = capsys.readouterr().out
    assert "gain @ 64" in out and "+0.200 [+0.000, +0.400]" in out


def test_the_shadow_summary_reads_a_runs_metrics():
    rows = [{"step": "0"},  # the first evaluation: no shadow figures
            {"shadow/tracin/spearman": "0.5", "shadow/tracin/top_choice_agreement": "1.0",
             "shadow/influence/kind/carry": "0.3", "shadow/influence/kind/product": "0.1",
             "shadow/tracin/kind/carry": "2e-7", "shadow/tracin/kind/product": "5e-7"},
            {"shadow/tracin/spearman": "0.9", "shadow/tracin/top_choice_agreement": "0.5",
             "shadow/influence/kind/carry": "0.3", "shadow/tracin/kind/carry": "1e-7",
             "shadow/tracin/kind/product": ""}]
    summary = shadow_influence.summarise(rows, "tracin")
    assert summary["iterations"] == 2
    assert summary["spearman"] == pytest.approx(0.7) and summary["top_choice"] == pytest.approx(0.75)
    assert summary["same_kind"] == 0.5  # the first iteration: carry against product
    assert summary["preferred_own"] == {"carry": 2} and summary["preferred_shadow"] == {"product": 1, "carry": 1}
