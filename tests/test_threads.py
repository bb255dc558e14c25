"""``trainer.threads``: a run's CPU thread count is pinned for its duration and given back after."""

from __future__ import annotations

import os

import pytest
import torch

from infuser.config import TrainerConfig
from infuser.fit import _torch_threads


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="trainer.threads must be at least 1"):
        TrainerConfig(threads=0)


@pytest.mark.parametrize("environment", [None, "2"])
def test_a_run_pins_its_threads_and_gives_them_back(monkeypatch, environment):
    if environment is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", environment)
    before = torch.get_num_threads()
    with _torch_threads(1):
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"  # what DDP processes Fabric launches inherit
    assert torch.get_num_threads() == before
    assert os.environ.get("OMP_NUM_THREADS") == environment


def test_unset_threads_leave_the_process_alone(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    with _torch_threads(None):
        assert torch.get_num_threads() == before
        assert os.environ["OMP_NUM_THREADS"] == "2"
