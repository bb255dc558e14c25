"""Benchmark rows: schema validation, clear errors, skip-and-count, local formats, Hub pinning."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from eval_paths import OLYMPIAD_MINI, SUPERGPQA_MINI

from infuser.eval import data
from infuser.eval.data import (
    OLYMPIAD_REVISION,
    load_olympiadbench,
    load_supergpqa,
    olympiad_row,
    supergpqa_row,
)
from infuser.eval.sources import DatasetError, RowError


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _gpqa(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "uuid": "u1", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer": "4",
        "answer_letter": "B", "discipline": "Science", "field": "Mathematics", "subfield": "Arithmetic",
        "difficulty": "easy", "is_calculation": True,
    }
    row.update(overrides)
    return row


def test_fixture_files_load() -> None:
    olympiad = load_olympiadbench(str(OLYMPIAD_MINI))
    assert len(olympiad.rows) == 16 and olympiad.skipped_count == 0
    physics = [r for r in olympiad.rows if r.subject == "Physics"]
    assert physics and all(r.context or r.id == "9016" for r in physics)
    assert {r.answer_type for r in olympiad.rows} == {"Numerical", "Expression", "Tuple", "Interval", "Equation"}
    assert olympiad.provenance.kind == "local" and len(olympiad.provenance.files[0][1]) == 64
    gpqa = load_supergpqa(str(SUPERGPQA_MINI))
    assert len(gpqa.rows) == 12
    assert {r.difficulty for r in gpqa.rows} == {"easy", "middle", "hard"}
    assert all(r.options[ord(r.answer_letter) - 65] == r.answer for r in gpqa.rows)


def test_real_rows_load(real_olympiad_file: Path) -> None:
    loaded = load_olympiadbench(str(real_olympiad_file.parent))
    assert len(loaded.rows) == 675
    assert {r.subset for r in loaded.rows} == {"OE_TO_maths_en_COMP"}
    assert all(r.subject == "Math" and r.language == "English" for r in loaded.rows)


def test_supergpqa_row_accepts_id_alias_and_derives_missing_fields() -> None:
    row = supergpqa_row({"id": 7, "question": "q", "options": ["a", "b"], "answer": "b"})
    assert (row.id, row.answer_letter) == ("7", "B")
    row = supergpqa_row({"uuid": "x", "question": "q", "options": ["a", "b"], "answer_letter": "a"})
    assert (row.answer, row.answer_letter) == ("a", "A")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"options": ["only"]}, "options"),
        ({"options": [str(i) for i in range(11)]}, "options"),
        ({"options": "A) 1"}, "options"),
        ({"answer_letter": "Z"}, "answer_letter"),
        ({"answer": "5"}, "answer"),
        ({"difficulty": "medium"}, "difficulty"),
        ({"is_calculation": "maybe"}, "is_calculation"),
        ({"question": ""}, "question"),
        ({"uuid": None}, "uuid"),
        ({"discipline": 3}, "discipline"),
    ],
)
def test_bad_supergpqa_rows_name_file_line_and_field(tmp_path: Path, overrides: dict[str, object], field: str) -> None:
    bad = {"uuid": "bad", **overrides}
    path = _write_jsonl(tmp_path / "bad.jsonl", [_gpqa(uuid="ok"), _gpqa(**bad)])
    with pytest.raises(RowError) as info:
        load_supergpqa(str(path))
    error = info.value
    assert (error.source, error.row, error.field) == (str(path), 2, field)
    assert str(path) in str(error) and "line 2" in str(error) and repr(field) in str(error)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": 1, "question": "q", "final_answer": [], "answer_type": "Numerical"}, "final_answer"),
        ({"id": 1, "question": "q", "final_answer": ["1"], "answer_type": "Number"}, "answer_type"),
        ({"id": 1, "question": "q", "final_answer": ["1"], "answer_type": "Numerical", "error": "abc"}, "error"),
        ({"id": 1, "question": "q", "final_answer": [1], "answer_type": "Numerical"}, "final_answer"),
        ({"question": "q", "final_answer": ["1"], "answer_type": "Numerical"}, "id"),
        ({"id": 1, "final_answer": ["1"], "answer_type": "Numerical"}, "question"),
        ({"id": 1, "question": "q", "final_answer": ["1"], "answer_type": "Numerical", "is_multiple_answer": "yes"}, "is_multiple_answer"),
    ],
)
def test_bad_olympiad_rows_name_the_field(record: dict[str, object], field: str) -> None:
    with pytest.raises(data._FieldError) as info:
        olympiad_row(record)
    assert info.value.field == field


def test_invalid_json_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(_gpqa()) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(RowError, match=r"broken.jsonl: line 3: not valid JSON"):
        load_supergpqa(str(path))


def test_skip_and_count_bad_rows(tmp_path: Path) -> None:
    rows = [_gpqa(uuid="a"), _gpqa(uuid="b", answer_letter="Q"), "not an object", _gpqa(uuid="c")]
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    loaded = load_supergpqa(str(path), on_bad_row="skip")
    assert [r.id for r in loaded.rows] == ["a", "c"]
    assert loaded.skipped_count == 2 and [e.row for e in loaded.skipped] == [2, 3]


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "dup.jsonl", [_gpqa(), _gpqa()])
    with pytest.raises(DatasetError, match="duplicate id"):
        load_supergpqa(str(path))


def test_json_and_parquet_files(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [_gpqa(uuid="a"), _gpqa(uuid="b", answer="3", answer_letter="A")]
    (tmp_path / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}), encoding="utf-8")
    pq.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "rows.parquet")
    for name in ("rows.json", "wrapped.json", "rows.parquet"):
        loaded = load_supergpqa(str(tmp_path / name))
        assert [r.answer_letter for r in loaded.rows] == ["B", "A"], name

    bad = rows + [_gpqa(uuid="c", options=["x"])]
    pq.write_table(pyarrow.Table.from_pylist(bad), tmp_path / "bad.parquet")
    with pytest.raises(RowError, match=r"bad.parquet: row 3: field 'options'"):
        load_supergpqa(str(tmp_path / "bad.parquet"))

    olympiad_rows = [json.loads(line) for line in OLYMPIAD_MINI.read_text().splitlines()]
    pq.write_table(pyarrow.Table.from_pylist(olympiad_rows), tmp_path / "OE_TO_maths_en_COMP.parquet")
    loaded = load_olympiadbench(str(tmp_path), subsets=["OE_TO_maths_en_COMP"])
    assert len(loaded.rows) == 16 and loaded.rows[0].subset == "OE_TO_maths_en_COMP"


def test_local_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_supergpqa(str(tmp_path / "missing.jsonl"))
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unknown file type"):
        load_supergpqa(str(tmp_path / "rows.csv"))
    with pytest.raises(DatasetError, match="no dataset file"):
        load_olympiadbench(str(tmp_path), subsets=["OE_TO_maths_en_COMP"])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no valid SuperGPQA rows"):
        load_supergpqa(str(tmp_path / "empty.jsonl"))


class _FakeDatasets(types.ModuleType):
    def __init__(self, rows: dict[str | None, list[dict[str, object]]]) -> None:
        super().__init__("datasets")
        self.rows = rows
        self.calls: list[tuple[str, str | None, str, str]] = []

    def load_dataset(self, path: str, name: str | None = None, split: str = "train", revision: str = "") -> list[dict[str, object]]:
        self.calls.append((path, name, split, revision))
        return self.rows[name]


def test_hub_loading_pins_the_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    olympiad_rows = [json.loads(line) for line in OLYMPIAD_MINI.read_text().splitlines()]
    maths = [r for r in olympiad_rows if "subject" not in r]
    physics = [dict(r, id=r["id"] + 100) for r in olympiad_rows if "subject" in r]
    fake = _FakeDatasets({"OE_TO_maths_en_COMP": maths, "OE_TO_physics_en_COMP": physics, None: [_gpqa()]})
    monkeypatch.setitem(sys.modules, "datasets", fake)

    loaded = load_olympiadbench()
    assert fake.calls == [
        ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", OLYMPIAD_REVISION),
        ("Hothan/OlympiadBench", "OE_TO_physics_en_COMP", "train", OLYMPIAD_REVISION),
    ]
    assert loaded.provenance.revision == OLYMPIAD_REVISION and len(loaded.rows) == len(olympiad_rows)
    assert {r.subject for r in loaded.rows if r.subset == "OE_TO_physics_en_COMP"} == {"Physics"}

    hub = types.ModuleType("huggingface_hub")

    class HfApi:
        def dataset_info(self, repo_id: str, revision: str) -> types.SimpleNamespace:
            assert (repo_id, revision) == ("m-a-p/SuperGPQA", "main")
            return types.SimpleNamespace(sha="abc123" * 6 + "abcd")

    hub.HfApi = HfApi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    gpqa = load_supergpqa()
    assert fake.calls[-1] == ("m-a-p/SuperGPQA", None, "train", "abc123" * 6 + "abcd")
    assert gpqa.provenance.to_json()["revision"] == "abc123" * 6 + "abcd"


def test_hub_bad_row_names_the_hub_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", _FakeDatasets({None: [_gpqa(), _gpqa(uuid="x", options=[])]}))
    with pytest.raises(RowError, match=r"m-a-p/SuperGPQA@deadbeef: row 2: field 'options'"):
        load_supergpqa(revision="deadbeef")


def test_hub_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = types.ModuleType("huggingface_hub")

    class HfApi:
        def dataset_info(self, repo_id: str, revision: str) -> None:
            raise OSError("offline")

    hub.HfApi = HfApi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    with pytest.raises(DatasetError, match="pass an explicit revision or a local path"):
        load_supergpqa()
