"""The GRPO throughput benchmark runs end to end and writes its JSON (a smoke test, never timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

REPO = Path(__file__).parents[1]
SCRIPT = [sys.executable, "-m", "benchmarks.grpo_throughput"]  # run from the repository root


def test_benchmark_writes_the_ratio(tiny_model_dir, tmp_path):
    """With the hash-parity reward a group of 8 answers is all right or all wrong with probability
    2/256, so each step has rows with signal on both sides and a ratio is reported."""
    out = tmp_path / "result.json"
    command = [*SCRIPT, "--model", str(tiny_model_dir), "--pairs", "2", "--prompts", "2",
               "--group", "8", "--completion_tokens", "6", "--threads", "1", "--reward", "hash_parity", "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ratio_vs_trl" in completed.stdout
    result = json.loads(out.read_text())
    assert result["ratio_vs_trl"] > 0 and len(result["pair_ratios"]) == 2
    for side in ("infuser", "trl"):
        assert result[side]["samples_per_s"] > 0
        assert result[side]["generation_share"] + result[side]["update_share"] == pytest.approx(1.0, abs=1e-2)


def test_a_side_that_did_no_work_gets_no_ratio(tiny_model_dir, tmp_path):
    """Completions of one token never hold a boxed answer: the 'correct' reward is 0 everywhere, no
    update happens on either side, and the benchmark says so instead of reporting a ratio."""
    out = tmp_path / "result.json"
    command = [*SCRIPT, "--model", str(tiny_model_dir), "--pairs", "1", "--prompts", "1",
               "--group", "2", "--completion_tokens", "1", "--threads", "1", "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "not reported" in completed.stdout and "--reward hash_parity" in completed.stdout
    result = json.loads(out.read_text())
    assert result["ratio_vs_trl"] is None and "infuser did no update in 1 of 1" in result["refused"]
