"""Shared fixtures: a tiny toy base built locally (never downloaded) and loaded via from_pretrained."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from infuser.toy.base_model import ToyBaseConfig, ensure_toy_base

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY = ToyBaseConfig(examples=400, epochs=1, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                     batch_size=32)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A barely-trained toy base (1 layer, 32 wide): real files, real tokenizer, seconds to build."""
    return ensure_toy_base(TINY, cache_dir=tmp_path_factory.mktemp("toy-cache"))


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model is loaded: for configurations that must be refused before that."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the configuration was refused")

    monkeypatch.setattr("infuser.roles.policy.load_causal_lm", refuse)
    monkeypatch.setattr("infuser.models.load_base_model", refuse)
