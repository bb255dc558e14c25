"""Result summaries (avg@k, breakdowns, files) and the target-set builder with its exclusion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_paths import SUPERGPQA_MINI

from infuser.eval.data import load_supergpqa
from infuser.eval.report import EvalResults, ItemRecord, breakdown, markdown_table, summarize, write_results
from infuser.eval.target_set import (
    build_target_set,
    load_exclusion,
    manifest_path,
    select_target_rows,
    write_target_set,
)


def _record(item: str, sample: int, correct: bool, group: str, missed: bool = False) -> ItemRecord:
    return ItemRecord(
        benchmark="b", id=item, sample=sample, prompt="p", output="o", extracted=None if missed else "x",
        gold="g", correct=correct, missed=missed, reason="exact" if correct else "mismatch", method="m",
        groups={"difficulty": group},
    )


RECORDS = [
    _record("1", 0, True, "easy"), _record("1", 1, True, "easy"), _record("1", 2, False, "easy"), _record("1", 3, True, "easy"),
    _record("2", 0, False, "hard"), _record("2", 1, False, "hard", missed=True), _record("2", 2, True, "hard"), _record("2", 3, False, "hard"),
    _record("3", 0, True, "hard"), _record("3", 1, True, "hard"), _record("3", 2, True, "hard"), _record("3", 3, True, "hard"),
]


def test_avg_at_k_and_breakdowns() -> None:
    summary = summarize("b", "supergpqa", "zero_shot", RECORDS, {"kind": "local"}, ["difficulty"])
    assert summary.items == 3 and summary.samples == 12 and summary.samples_per_item == (4, 4)
    assert summary.accuracy == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert summary.miss_rate == pytest.approx(1 / 12) and summary.misses == 1
    table = summary.breakdowns["difficulty"]
    assert table.groups["easy"].accuracy == pytest.approx(0.75)
    assert table.groups["hard"].accuracy == pytest.approx(0.625) and table.groups["hard"].items == 2
    assert table.micro == pytest.approx(summary.accuracy)
    assert table.macro == pytest.approx((0.75 + 0.625) / 2)
    assert breakdown(RECORDS, "missing_label").groups["(none)"].items == 3


def test_results_files(tmp_path: Path) -> None:
    summary = summarize("b", "supergpqa", "zero_shot", RECORDS, {"kind": "local"}, ["difficulty"])
    results = EvalResults(protocol={"mode": "predictions", "seed": 0, "sampling": {}}, benchmarks=(summary,),
                          created="2025-01-01T00:00:00+00:00", infuser_version="0.1.0")
    paths = write_results(results, RECORDS, tmp_path / "out")
    data = json.loads(paths.results_json.read_text())
    assert data["schema"] == 1 and data["overall"]["items"] == 3
    assert data["benchmarks"]["b"]["breakdowns"]["difficulty"]["groups"]["easy"]["items"] == 1
    lines = paths.items_jsonl.read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["group_difficulty"] == "easy"
    table = markdown_table(results)
    assert "| b | zero_shot | 3 | 4 | 66.67 | 8.33 | 0 |" in table
    assert "## b by difficulty" in table


def test_target_set_selection_is_seeded_and_order_independent() -> None:
    rows = load_supergpqa(str(SUPERGPQA_MINI)).rows
    science = [r for r in rows if r.discipline == "Science"]
    first, candidates = select_target_rows(rows, n=4, seed=7)
    again, _ = select_target_rows(list(reversed(rows)), n=4, seed=7)
    other, _ = select_target_rows(rows, n=4, seed=8)
    assert candidates == len(science) and len(first) == 4
    assert [r.id for r in first] == [r.id for r in again]
    assert all(r.discipline == "Science" for r in first)
    assert {r.id for r in other} != {r.id for r in first} or len(science) == 4
    everything, _ = select_target_rows(rows, n=100, seed=0, discipline=None)
    assert len(everything) == len(rows)
    hard, _ = select_target_rows(rows, n=100, seed=0, discipline=None, difficulty="hard")
    assert {r.difficulty for r in hard} == {"hard"}
    with pytest.raises(ValueError):
        select_target_rows(rows, n=3, seed=0, discipline="Astrology")
    with pytest.raises(ValueError):
        select_target_rows(rows, n=0, seed=0)


def test_target_set_files_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "target" / "science.jsonl"
    manifest = build_target_set(str(out), path=str(SUPERGPQA_MINI), n=3, seed=1)
    assert out.is_file() and manifest_path(out).is_file()
    written = load_supergpqa(str(out)).rows  # the target set is SuperGPQA-shaped and reloads
    assert [r.id for r in written] == list(manifest.ids)
    assert json.loads(out.read_text().splitlines()[0]).keys() >= {"uuid", "question", "options", "answer", "answer_letter"}
    meta = json.loads(manifest_path(out).read_text())
    assert meta["seed"] == 1 and meta["n_selected"] == 3 and meta["filters"]["discipline"] == "Science"
    assert meta["source"]["files"][0]["sha256"] == manifest.source["files"][0]["sha256"]
    for source in (out, manifest_path(out)):
        exclusion = load_exclusion(source)
        assert exclusion.ids == set(manifest.ids) and exclusion.seed == 1
    again = write_target_set(load_supergpqa(str(SUPERGPQA_MINI)), tmp_path / "again.jsonl", n=3, seed=1)
    assert again.ids == manifest.ids and again.sha256 == manifest.sha256
