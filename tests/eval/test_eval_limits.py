"""The per-item time limit: a killed-and-restarted worker process that works from any thread."""

from __future__ import annotations

import threading
import time

import eval_worker_helpers as helpers
import pytest

from infuser.answers.extraction import bound_text
from infuser.eval.limits import LimitedPool, LimitedWorker, WorkerStartError


def test_bound_text_keeps_the_tail() -> None:
    assert bound_text("abcdef", 10) == ("abcdef", False)
    assert bound_text("abcdef", 3) == ("def", True)
    with pytest.raises(ValueError):
        bound_text("x", 0)


@pytest.fixture(scope="module")
def worker():
    with LimitedWorker(timeout_s=1.0, memory_limit_mb=1024) as w:
        yield w


def test_call_returns_value(worker: LimitedWorker) -> None:
    outcome = worker.call(helpers.add, 2, 3)
    assert outcome.ok and outcome.value == 5


def test_timeout_kills_and_restarts(worker: LimitedWorker) -> None:
    first = worker.call(helpers.pid).value
    restarts = worker.restarts
    start = time.monotonic()
    outcome = worker.call(helpers.spin_forever)
    assert outcome.status == "timeout"
    assert time.monotonic() - start < 5
    assert worker.restarts == restarts + 1
    after = worker.call(helpers.pid)
    assert after.ok and after.value != first  # a fresh process
    assert worker.call(helpers.add, 1, 1).value == 2


def test_per_call_timeout_override(worker: LimitedWorker) -> None:
    assert worker.call(helpers.sleep_then_return, 1.3, "late", timeout_s=3.0).value == "late"


def test_exceptions_become_error_outcomes(worker: LimitedWorker) -> None:
    outcome = worker.call(helpers.boom, "bad input")
    assert outcome.status == "error" and "RuntimeError: bad input" in (outcome.error or "")
    assert worker.call(helpers.add, 1, 2).value == 3  # the worker survives


def test_memory_limit_turns_runaway_allocation_into_an_error(worker: LimitedWorker) -> None:
    outcome = worker.call(helpers.allocate_mb, 4096)
    assert outcome.status == "error" and "MemoryError" in (outcome.error or "")


def test_worker_death_is_reported_and_recovered(worker: LimitedWorker) -> None:
    outcome = worker.call(helpers.die)
    assert outcome.status == "error" and "died" in (outcome.error or "")
    assert worker.call(helpers.add, 4, 4).value == 8


def test_stray_prints_do_not_corrupt_the_protocol(worker: LimitedWorker) -> None:
    assert worker.call(helpers.noisy, 7).value == 7


def test_time_limit_works_outside_the_main_thread(worker: LimitedWorker) -> None:
    results: list[str] = []

    def run() -> None:
        results.append(worker.call(helpers.spin_forever).status)
        results.append(str(worker.call(helpers.add, 20, 22).value))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert results == ["timeout", "42"]


def test_pool_map_keeps_order_and_isolates_timeouts() -> None:
    with LimitedPool(workers=2, timeout_s=1.0, memory_limit_mb=1024) as pool:
        jobs = [(0.0, "a"), (5.0, "slow"), (0.0, "c"), (0.1, "d")]
        outcomes = pool.map(helpers.sleep_then_return, jobs)
        assert [o.status for o in outcomes] == ["ok", "timeout", "ok", "ok"]
        assert [o.value for o in outcomes if o.ok] == ["a", "c", "d"]
        assert pool.restarts == 1


def test_bad_preload_fails_clearly() -> None:
    worker = LimitedWorker(timeout_s=1.0, preload=("no_such_module_for_infuser_tests",))
    with pytest.raises(WorkerStartError, match="ModuleNotFoundError"):
        worker.start()


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        LimitedWorker(timeout_s=0)
    with pytest.raises(ValueError):
        LimitedPool(workers=0)


def test_pool_calls_take_their_own_time_limits() -> None:
    with LimitedPool(workers=1, timeout_s=5.0, memory_limit_mb=1024) as pool:
        outcomes = pool.map(helpers.sleep_then_return, [(1.0, "cut"), (0.0, "kept")], timeouts=[0.2, 5.0])
        assert [o.status for o in outcomes] == ["timeout", "ok"]
        assert pool.restarts == 1
        with pytest.raises(ValueError, match="timeouts"):
            pool.map(helpers.add, [(1, 2)], timeouts=[1.0, 2.0])


def test_a_killed_worker_is_restarted_before_its_next_call() -> None:
    with LimitedPool(workers=2, timeout_s=0.5, memory_limit_mb=1024) as pool:
        assert pool.call(helpers.spin_forever).status == "timeout"
        assert all(o.ok for o in pool.map(helpers.add, [(1, 1)] * 4))
        assert pool.restarts == 1

