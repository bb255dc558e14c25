"""Paths used by the eval tests (a uniquely named module, so imports never pick up another
directory's ``conftest``)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLYMPIAD_MINI = FIXTURES / "olympiad_mini.jsonl"
SUPERGPQA_MINI = FIXTURES / "supergpqa_mini.jsonl"
REAL_OLYMPIAD_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "olympiadbench"
REAL_OLYMPIAD_FILE = REAL_OLYMPIAD_DIR / "OE_TO_maths_en_COMP.jsonl"
