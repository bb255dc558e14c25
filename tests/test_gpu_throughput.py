"""The GPU throughput benchmark runs end to end on the tiny shape on CPU and records what it promises (never timed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_throughput as benchmark

STAGE_FIELDS = {"seconds", "tokens", "run_tokens", "tflop", "tokens_per_s", "mfu", "peak_memory_gib"}


def test_tiny_shape_on_cpu_writes_complete_records(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    benchmark.main(["--shapes", "tiny", "--device", "cpu", "--dtype", "float32", "--prompts", "2", "--samples", "2",
                    "--prompt_tokens", "8", "--max_new_tokens", "6", "--micro_batch_size", "2",
                    "--target_prompts", "1", "--candidates", "2", "--json", str(out)])
    assert "| tiny |" in capsys.readouterr().out
    (record,) = json.loads(out.read_text())["records"]
    assert {"date", "hardware", "torch", "transformers", "shape", "decoder_linear_parameters",
            "output_projection_parameters", "settings", "peak_memory_kind", "seconds_per_candidate"} <= set(record)
    assert record["hardware"] and record["date"][:2] == "20" and "getrusage" in record["peak_memory_kind"]
    assert record["shape"]["name"] == "tiny" and record["settings"]["device"] == "cpu"
    for name in ("rollout", "generate", "update", "influence_prepare", "influence_score"):
        stage = record[name]
        assert set(stage) == STAGE_FIELDS, name
        assert stage["seconds"] > 0 and stage["tokens"] > 0 and stage["tokens_per_s"] > 0, name
        assert stage["run_tokens"] > stage["tokens"] and stage["tflop"] > 0, name  # prompts run too
        assert stage["mfu"] >= 0 and stage["peak_memory_gib"] > 0, name
    # 2 prompts x 2 samples, every row generated until EOS or the budget; the update trains on them
    assert 4 <= record["rollout"]["tokens"] <= 4 * 6
    assert record["update"]["tokens"] == record["rollout"]["tokens"]


def test_target_prompts_must_fit_the_rollout():
    with pytest.raises(SystemExit):
        benchmark.main(["--shapes", "tiny", "--device", "cpu", "--prompts", "2", "--target_prompts", "3"])
