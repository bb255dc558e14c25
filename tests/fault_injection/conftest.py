"""Fixtures of the fault-injection tests: a toy base that learns enough for every stage to run.

The session's ``tiny_model_dir`` base never drafts a valid question, so its runs skip both
updates and a resume test on it would not exercise the optimisers. This recipe (about half a
minute to build on two CPU cores, once per session) drafts mostly valid questions that its Solver
answers right sometimes: influence is scored and both roles take optimizer steps every iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from infuser.toy.base_model import ToyBaseConfig, ensure_toy_base

LEARNING = ToyBaseConfig(examples=4000, epochs=3, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128,
                         batch_size=32)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def learning_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with _one_torch_thread():
        return ensure_toy_base(LEARNING, cache_dir=tmp_path_factory.mktemp("learning-toy"))


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The models here are tiny: a second intra-op thread buys nothing and, on a busy two-core
    machine, makes every run several times slower. (The child processes of the kill tests run
    with ``OMP_NUM_THREADS=1`` too.)"""
    with _one_torch_thread():
        yield
