"""The executor interface: what running untrusted code returns, and the one way to run it.

Model-written code is executed only through an :class:`Executor` (the ``executor`` component kind,
entry-point group ``infuser.executor``), never in the trainer's process: no ``eval``/``exec`` of
untrusted text in-process. The interface is small on purpose, so that an evaluation and, later,
the training loop's code task call the same four methods:

* :meth:`Executor.run` (``program -> Execution``): run one program;
* :meth:`Executor.run_tests` (``program, tests, entry_point -> TestRun``): run a program, then
  each test against it, counting the tests that pass (so both the all-pass reward and the passed
  fraction can be computed);
* :meth:`Executor.run_many` and :meth:`Executor.run_tests_many`: the same over a batch, through a
  pool of at most ``max_workers`` programs at a time, results in input order.

The default implementation is :class:`infuser.sandbox.local.LocalExecutor` (registered as ``local``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Status = Literal["passed", "failed", "timeout", "memory", "crash", "output_limit", "sandbox_error"]
"""How an execution ended.

* ``passed``: exited with status 0 (``run``), or every test passed (``run_tests``);
* ``failed``: exited otherwise (an exception, ``sys.exit(1)``), or a test failed;
* ``timeout``: killed at the wall-clock limit, or stopped at the CPU-time limit;
* ``memory``: ran out of its address-space limit;
* ``crash``: killed by a signal (a segmentation fault, ``abort``);
* ``output_limit``: killed for writing more than the output limit;
* ``sandbox_error``: the sandbox could not be set up; the program did not run.
"""

ABNORMAL: tuple[Status, ...] = ("timeout", "memory", "crash", "output_limit", "sandbox_error")


@dataclass(frozen=True)
class Execution:
    """What one program's run did.

    Attributes:
        status: see :data:`Status`.
        reason: one line on why (empty when it passed): the exception's last line, the limit it
            hit, the signal that killed it.
        returncode: the exit status (negative: killed by that signal), ``None`` when unknown.
        stdout / stderr: what it wrote, decoded as UTF-8, each cut at the executor's output limit.
        seconds: wall time from start to reaped, sandbox set-up included.
        isolation: the isolation level it ran under (``bwrap``, ``unshare`` or ``plain``).
        truncated: an output was cut at the limit.
    """

    status: Status
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str
    truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class TestResult:
    """One test's outcome: ``passed``, and otherwise why not (the exception, or ``not run``)."""

    __test__ = False  # not a pytest test class

    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class TestCase:
    """A program with its tests, for :meth:`Executor.run_tests_many`."""

    __test__ = False

    program: str
    tests: tuple[str, ...]
    entry_point: str | None = None


@dataclass(frozen=True)
class TestRun:
    """A program run against its tests.

    Attributes:
        execution: the run itself (its ``status`` is ``passed`` when it exited normally).
        results: one per test, in order; tests the run never reached are failed, ``not run``.
    """

    __test__ = False

    execution: Execution
    results: tuple[TestResult, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        """Tests that passed (also when the run was stopped later)."""
        return sum(result.passed for result in self.results)

    @property
    def fraction(self) -> float:
        """Passed over total (0 without tests): the partial-credit reward."""
        return self.passed / self.total if self.total else 0.0

    @property
    def status(self) -> Status:
        """``passed`` only when every test passed and the run ended normally; an abnormal end
        (timeout, memory, crash, output limit, sandbox error) is that; otherwise ``failed``."""
        if self.execution.status in ABNORMAL:
            return self.execution.status
        return "passed" if self.total and self.passed == self.total else "failed"

    @property
    def all_passed(self) -> bool:
        """The all-or-nothing reward (HumanEval's pass)."""
        return self.status == "passed"

    @property
    def reason(self) -> str:
        """Why it did not pass: the abnormal end, else the first failing test's reason."""
        if self.execution.status in ABNORMAL:
            return self.execution.reason
        failed = next((r for r in self.results if not r.passed), None)
        return "" if failed is None else failed.reason or "failed"


T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs untrusted programs away from the trainer (the ``executor`` component kind).

    Args:
        max_workers: programs run at the same time by :meth:`run_many` / :meth:`run_tests_many`.
    """

    isolation: str = "none"
    """The isolation level this executor runs programs under (reported with every result)."""

    def __init__(self, max_workers: int = 1) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers

    @abstractmethod
    def run(self, program: str) -> Execution:
        """Run ``program`` (Python source) as ``__main__`` and return what it did."""

    @abstractmethod
    def run_tests(self, program: str, tests: Sequence[str], entry_point: str | None = None) -> TestRun:
        """Run ``program``, then each test (Python source, run in a copy of the program's
        globals); with ``entry_point``, a test that defines ``check`` has it called on the
        program's ``entry_point`` (HumanEval's form). A test passes when it raises nothing."""

    def run_many(self, programs: Sequence[str]) -> list[Execution]:
        """:meth:`run` over a batch, ``max_workers`` at a time, in input order."""
        return self._map(self.run, programs)

    def run_tests_many(self, cases: Sequence[TestCase]) -> list[TestRun]:
        """:meth:`run_tests` over a batch, ``max_workers`` at a time, in input order."""
        return self._map(lambda case: self.run_tests(case.program, case.tests, case.entry_point), cases)

    def describe(self) -> dict[str, Any]:
        """What results were produced under (recorded in ``results.json``)."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "isolation": self.isolation,
                "max_workers": self.max_workers}

    def _map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        # Threads only wait on child processes here; the isolation is the processes'.
        if self.max_workers == 1 or len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            return list(pool.map(function, items))
