"""torchmetrics accuracy: sum-reduced counts, grouped accuracy, judged generations, two processes."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from eval_paths import OLYMPIAD_MINI, SUPERGPQA_MINI

from infuser.eval.data import load_olympiadbench, load_supergpqa
from infuser.eval.metrics import Accuracy, BenchmarkAccuracy, GroupedAccuracy
from infuser.eval.score import JudgeConfig


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_accuracy_counts_and_miss_rate() -> None:
    metric = Accuracy()
    assert float(metric.compute()) == 0.0
    metric.update([True, False, True], missed=[False, True, False])
    metric.update(torch.tensor([True]))
    assert float(metric.compute()) == pytest.approx(3 / 4)
    assert float(metric.miss_rate()) == pytest.approx(1 / 4)
    for state in ("correct", "total", "missed"):
        assert metric._reductions[state].__name__ in ("dim_zero_sum", "sum")
    metric.reset()
    assert int(metric.total) == 0
    with pytest.raises(ValueError):
        metric.update([True], missed=[True, False])


def test_grouped_accuracy_micro_and_macro() -> None:
    metric = GroupedAccuracy(["easy", "middle", "hard"])
    metric.update([True, True, False, False, True], ["easy", "easy", "hard", "hard", "middle"])
    result = metric.compute()
    assert float(result["easy"]) == 1.0 and float(result["hard"]) == 0.0 and float(result["middle"]) == 1.0
    assert float(result["micro"]) == pytest.approx(3 / 5)
    assert float(result["macro"]) == pytest.approx(2 / 3)
    with pytest.raises(KeyError):
        metric.update([True], ["impossible"])
    lenient = GroupedAccuracy(["a"], unknown="ignore")
    lenient.update([True, False], ["a", "b"])
    assert float(lenient.compute()["micro"]) == 1.0


def test_benchmark_accuracy_judges_generations() -> None:
    rows = load_olympiadbench(str(OLYMPIAD_MINI)).rows[:3]  # answers 12 / 2,3 / f(x)=2x
    metric = BenchmarkAccuracy(JudgeConfig(item_timeout_s=10))
    try:
        metric.update(
            ["So the final answer is $\\boxed{12}$.", "So the final answer is \\boxed{3}, \\boxed{2}", "no idea"],
            rows,
        )
        assert float(metric.compute()) == pytest.approx(2 / 3)
        assert float(metric.miss_rate()) == pytest.approx(1 / 3)
        assert [s.reason for s in metric.last_scores] == ["exact", "exact", "no_answer"]

        gpqa = load_supergpqa(str(SUPERGPQA_MINI)).rows[:2]  # B, A
        metric.update(["Answer: B", "Answer: C"], gpqa)
        assert float(metric.compute()) == pytest.approx(3 / 5)
        clone = copy.deepcopy(metric)  # Lightning clones metrics; the judge workers are not copied
        assert float(clone.compute()) == pytest.approx(3 / 5)
        with pytest.raises(TypeError):
            metric.update(["x", "y"], [rows[0], gpqa[0]])
    finally:
        metric.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _distributed_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        accuracy = Accuracy()
        grouped = GroupedAccuracy(["easy", "hard"])
        if rank == 0:  # 3 of 3 right
            accuracy.update([True, True, True])
            grouped.update([True, True, True], ["easy", "easy", "hard"])
        else:  # 0 of 1 right: the mean of per-process accuracies would be 0.5, the truth is 0.75
            accuracy.update([False], missed=[True])
            grouped.update([False], ["hard"])
        value = float(accuracy.compute())
        groups = {k: float(v) for k, v in grouped.compute().items()}
        Path(out_dir, f"rank{rank}.txt").write_text(f"{value} {groups['easy']} {groups['hard']} {groups['micro']}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sum_reduction_is_right_across_two_processes(tmp_path: Path) -> None:
    mp.spawn(_distributed_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        accuracy, easy, hard, micro = map(float, (tmp_path / f"rank{rank}.txt").read_text().split())
        assert accuracy == pytest.approx(0.75) and micro == pytest.approx(0.75)
        assert easy == 1.0 and hard == pytest.approx(0.5)
