"""The GPU check runs on CPU at the tiny shape, every part, so that it cannot rot between GPU loans
(a smoke test of what it records, never timed)."""

from __future__ import annotations

import json

from benchmarks import gpu_check as check


def test_every_part_runs_on_cpu_at_the_tiny_shape(tmp_path):
    out = tmp_path / "check"
    result = check.main(["--device", "cpu", "--shapes", "tiny", "--quick", "--out", str(out)])
    statuses = {part.name: part.status for part in result.parts}
    assert statuses == {"environment": "ok", "cuda tests": "ok", "build tiny": "ok", "throughput tiny": "ok",
                        "loop tiny": "ok"}, [(p.name, p.detail) for p in result.parts]
    record = json.loads(out.with_suffix(".json").read_text())
    tests = next(p["result"] for p in record["parts"] if p["name"] == "cuda tests")["tests"]
    assert tests and all(t["outcome"] == "skipped" for t in tests.values())  # no CUDA here
    loop = next(p["result"] for p in record["parts"] if p["name"] == "loop tiny")
    assert {s["stage"] for s in loop["stages"]} >= {"target", "generate", "solve", "influence", "generator_update",
                                                   "solver_update", "evaluate", "checkpoint"}
    assert all(s["measured_mib"] > 0 and s["estimated_mib"] > 0 for s in loop["stages"])
    assert set(loop["tokens_per_s"]) == {"generate", "solve", "generator_update", "solver_update", "influence"}
    throughput = next(p["result"] for p in record["parts"] if p["name"] == "throughput tiny")
    assert throughput["generate"]["tokens"] > 0 and throughput["sampler_vs_generate"] > 0
    assert {g["goal"] for g in record["goals"]} >= {"sampler >= model.generate at tiny",
                                                    "peak stage named right at tiny"}
    markdown = out.with_suffix(".md").read_text()
    assert "| loop tiny | ok |" in markdown and "| goal | value | met |" in markdown
