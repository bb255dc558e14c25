"""Shared fixtures of the eval harness tests.

The real OlympiadBench rows live beside the checkout (``../shared/data/olympiadbench``); tests
that use them skip when the folder is absent. Everything else uses the fixtures written for these
tests in ``fixtures/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eval_paths import REAL_OLYMPIAD_DIR, REAL_OLYMPIAD_FILE

from infuser.eval.score import JudgeConfig, Scorer


@pytest.fixture(scope="session")
def scorer() -> Iterator[Scorer]:
    """One judge worker for the whole session (starting one costs about a second)."""
    with Scorer(JudgeConfig(item_timeout_s=10.0)) as shared:
        yield shared


@pytest.fixture(scope="session")
def real_olympiad_file() -> Path:
    if not REAL_OLYMPIAD_FILE.is_file():
        pytest.skip(f"real OlympiadBench rows not found at {REAL_OLYMPIAD_DIR}")
    return REAL_OLYMPIAD_FILE
