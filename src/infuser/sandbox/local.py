"""``LocalExecutor``: each program in a confined child process of its own on this machine.

Per program: a child process started in a new session under the executor's isolation level
(:mod:`infuser.sandbox.isolation`), running the start-up code that confines it before the
program runs (:mod:`infuser.sandbox.child`: a new root at the namespace levels, resource limits,
no privileges, a syscall filter). It gets its job (program, tests, limits) on ``stdin``, which is
``/dev/null`` once the program runs; a fixed environment (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``
and one-thread settings for numerical libraries: nothing inherited, no token, key or path of the
trainer's); and a fresh, empty working directory: a tmpfs at ``/sandbox`` at the namespace levels
(gone with the namespace), a temporary folder under ``tmp_dir`` at ``plain`` (removed afterwards).

The parent reads ``stdout``, ``stderr`` and the test-report pipe against a wall-clock deadline. At
the deadline, or when an output passes its limit, it kills the program (at the namespace levels
PID 1 of its namespace, so that the kernel takes everything inside down with it before its
wrapper reports it gone), then the whole process group; once the child is reaped, nothing of the
execution is left.

Why a process per program rather than a pool of warm workers (as the math judge has): a program
can change anything in its interpreter, so an interpreter must not run a second program; and
with ``python -I -S`` a fresh one starts in a few milliseconds (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from infuser.sandbox import child
from infuser.sandbox.base import Execution, Executor, Status, TestResult, TestRun
from infuser.sandbox.isolation import (
    INSIDE,
    LEVELS,
    NOT_ISOLATED,
    Interpreter,
    Level,
    available,
    bootstrap,
    command,
    readonly_paths,
)

log = logging.getLogger(__name__)

_BOOTSTRAP = Path(child.__file__).read_text(encoding="utf-8")
_REPORT_LIMIT = 1 << 20
# (level, interpreter, site packages, visible paths) -> "" or why the trial program failed there
_PROBED: dict[tuple[str, str, bool, tuple[str, ...]], str] = {}
# No thread pools at import (numpy's BLAS would try to start them, and a program may start none).
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_SIGNAL_RETURN = 128  # the namespace levels exit 128 + n when the program died of signal n


@dataclass
class _Captured:
    """What the parent read from the child's pipes."""

    stdout: bytearray
    stderr: bytearray
    report: bytearray
    killed_for: Literal["", "timeout", "output"] = ""
    over: str = ""


class LocalExecutor(Executor):
    """Runs each program in a confined child process on this machine (the default executor).

    Args:
        isolation: ``auto`` (the first of ``bwrap``, ``unshare``, ``plain`` that works here; ``plain``
            with a one-line warning naming what it does not isolate), or one of them (an error
            when it does not work here).
        timeout_s: wall-clock limit of one program, start-up included.
        cpu_s: CPU-time limit (``RLIMIT_CPU``, whole seconds, rounded up); default ``timeout_s``.
        memory_mb: address-space limit (``RLIMIT_AS``); at least 64 (the interpreter itself).
        file_size_mb: the largest file a program may write (``RLIMIT_FSIZE``); also the size of
            its ``/tmp`` and of its working directory at the namespace levels.
        max_output_bytes: ``stdout`` and ``stderr`` are each kept up to this; a program writing
            more is killed (``output_limit``).
        max_workers: programs run at the same time in batches (default: the CPU count).
        python: the interpreter that runs programs (default: the trainer's base interpreter).
        site_packages: let programs import that interpreter's site packages (``-I`` without ``-S``).
        readable_paths: more paths shown read-only at the namespace levels (a virtual
            environment, a data folder).
        tmp_dir: where the ``plain`` level's working directories (and the ``unshare`` level's
            empty mount point, one per executor) are made (default: the system's).
    """

    def __init__(
        self,
        isolation: Literal["auto", "bwrap", "unshare", "plain"] = "auto",
        timeout_s: float = 10.0,
        cpu_s: float | None = None,
        memory_mb: int = 1024,
        file_size_mb: int = 16,
        max_output_bytes: int = 1 << 20,
        max_workers: int | None = None,
        python: str | None = None,
        site_packages: bool = False,
        readable_paths: Sequence[str] = (),
        tmp_dir: str | None = None,
    ) -> None:
        super().__init__(max_workers if max_workers is not None else max(1, os.cpu_count() or 1))
        if timeout_s <= 0 or (cpu_s is not None and cpu_s <= 0):
            raise ValueError(f"executor: timeout_s and cpu_s must be positive, got {timeout_s} and {cpu_s}")
        if memory_mb < 64 or file_size_mb < 1 or max_output_bytes < 1:
            raise ValueError("executor: memory_mb must be >= 64, file_size_mb >= 1 and max_output_bytes >= 1")
        self.timeout_s = float(timeout_s)
        self.cpu_s = math.ceil(cpu_s if cpu_s is not None else timeout_s)
        self.memory_mb = int(memory_mb)
        self.file_size_mb = int(file_size_mb)
        self.max_output_bytes = int(max_output_bytes)
        self.site_packages = bool(site_packages)
        self.tmp_dir = tmp_dir
        self.interpreter = Interpreter.find(python)
        self.readonly, self.symlinks = readonly_paths(self.interpreter, tuple(readable_paths))
        self.seccomp = os.uname().machine in child.SECCOMP_ARCHES
        # The last word of every command line this executor starts (the program's sys.argv[1]):
        # names its processes in `ps`, so that one executor's can be told from another's.
        self.label = f"infuser-executor-{secrets.token_hex(8)}"
        self._root: str | None = None
        self.isolation = self._choose(isolation)
        if self.isolation == "unshare":
            self._mount_point()  # now, not from the pool's threads

    # -- the isolation level ---------------------------------------------------------------------------

    def _choose(self, requested: str) -> Level:
        if requested != "auto" and requested not in LEVELS:
            raise ValueError(f"executor isolation: {requested!r} is not one of auto, {', '.join(LEVELS)}")
        failures = []
        for level in LEVELS if requested == "auto" else (requested,):
            problem = self._probe(level)
            if not problem:
                if level == "plain" and requested == "auto":
                    log.warning("sandbox: neither bwrap nor unshare works here (%s); programs run with resource "
                                "limits and a syscall filter only: %s", "; ".join(failures), NOT_ISOLATED["plain"])
                if not self.seccomp:
                    log.warning("sandbox: no syscall filter on %s: programs may start processes and open sockets "
                                "unless the %s level stops them", os.uname().machine, level)
                return level
            failures.append(f"{level}: {problem}")
        raise RuntimeError(f"executor isolation {requested!r} does not work here: {'; '.join(failures)}")

    def _probe(self, level: Level) -> str:
        """Why ``level`` does not work here ("" if it does): one trial program, once per process."""
        key = (level, self.interpreter.executable, self.site_packages, tuple(self.readonly))
        if key not in _PROBED:
            if not available(level):
                _PROBED[key] = "not installed"
            else:
                trial, _ = self._execute("print(6 * 7)", None, None, level, timeout_s=max(self.timeout_s, 30.0))
                ok = trial.status == "passed" and trial.stdout == "42\n"
                _PROBED[key] = "" if ok else f"{trial.status}: {trial.reason or trial.stdout[:100]!r}"[:300]
        return _PROBED[key]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "timeout_s": self.timeout_s, "cpu_s": self.cpu_s, "memory_mb": self.memory_mb,
                "file_size_mb": self.file_size_mb, "max_output_bytes": self.max_output_bytes,
                "python": self.interpreter.executable, "site_packages": self.site_packages, "seccomp": self.seccomp}

    # -- running ------------------------------------------------------------------------------------------

    def run(self, program: str) -> Execution:
        return self._execute(program, None, None, self.isolation)[0]

    def run_tests(self, program: str, tests: Sequence[str], entry_point: str | None = None) -> TestRun:
        execution, reports = self._execute(program, list(tests), entry_point, self.isolation)
        not_run = TestResult(False, f"not run ({execution.status}: {execution.reason})" if execution.reason
                             else "not run")
        results = [reports.get(index, not_run) for index in range(len(tests))]
        return TestRun(execution, tuple(results))

    def _limits(self) -> dict[str, tuple[int, int]]:
        return {
            "RLIMIT_CPU": (self.cpu_s, self.cpu_s + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
            "RLIMIT_AS": (self.memory_mb << 20, self.memory_mb << 20),
            "RLIMIT_FSIZE": (self.file_size_mb << 20, self.file_size_mb << 20),
            "RLIMIT_NOFILE": (256, 256),
            "RLIMIT_CORE": (0, 0),
            "RLIMIT_NPROC": (0, 0),
        }

    def _execute(self, program: str, tests: list[str] | None, entry_point: str | None, level: Level,
                 timeout_s: float | None = None) -> tuple[Execution, dict[int, TestResult]]:
        start = time.monotonic()
        deadline = start + (timeout_s or self.timeout_s)
        nonce = secrets.token_hex(16)
        root = None
        if level == "unshare":
            root = {"root": self._mount_point(), "inside": INSIDE, "readonly": self.readonly,
                    "symlinks": self.symlinks, "tmp_mb": self.file_size_mb}
        arguments = [*command(level, self.readonly, self.symlinks, self.file_size_mb),
                     *bootstrap(self.interpreter, _BOOTSTRAP, self.site_packages), self.label]
        read_end, write_end = os.pipe()
        folder = None
        try:
            folder = tempfile.mkdtemp(prefix="infuser-sandbox-", dir=self.tmp_dir) if level == "plain" else None
            job = marshal.dumps({"program": program, "tests": tests, "entry_point": entry_point, "nonce": nonce,
                                 "report_fd": write_end, "root": root, "limits": self._limits(),
                                 "arch": os.uname().machine, "seccomp": self.seccomp})
            environment = {"PATH": "/usr/bin:/bin", "HOME": folder or INSIDE, "TMPDIR": folder or "/tmp",
                           "LANG": "C.UTF-8", **_ONE_THREAD}
            try:
                process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, pass_fds=(write_end,), cwd=folder or "/",
                                           env=environment, start_new_session=True)
            except OSError as error:
                empty = _Captured(bytearray(), bytearray(), bytearray())
                return self._result("sandbox_error", f"could not start: {error}", None, empty, start, level), {}
            os.close(write_end)
            write_end = -1
            captured = self._collect(process, job, read_end, deadline)
            status, reason = self._status(captured, process.returncode, level, time.monotonic() - start, timeout_s)
            return (self._result(status, reason, process.returncode, captured, start, level),
                    self._reports(captured, nonce))
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
            if folder is not None:
                _remove(folder)

    def _mount_point(self) -> str:
        """An empty folder, one per executor, that the ``unshare`` level mounts its new root on
        (inside each program's own mount namespace: nothing is ever written to it here)."""
        if self._root is None:
            self._root = tempfile.mkdtemp(prefix="infuser-sandbox-root-", dir=self.tmp_dir)
            weakref.finalize(self, _remove, self._root)
        return self._root

    def _collect(self, process: subprocess.Popen[bytes], job: bytes, report_fd: int, deadline: float) -> _Captured:
        """Hand the child its job on ``stdin``, then read its pipes until they close and it exits,
        the deadline passes or an output passes its limit; then make sure nothing of it is left."""
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        captured = _Captured(bytearray(), bytearray(), bytearray())
        buffers = {process.stdout.fileno(): ("stdout", captured.stdout, self.max_output_bytes),
                   process.stderr.fileno(): ("stderr", captured.stderr, self.max_output_bytes),
                   report_fd: ("report", captured.report, _REPORT_LIMIT)}
        stdin, sent = process.stdin.fileno(), 0
        os.set_blocking(stdin, False)
        with selectors.DefaultSelector() as selector:
            selector.register(stdin, selectors.EVENT_WRITE)
            for fd in buffers:
                selector.register(fd, selectors.EVENT_READ)
            while len(selector.get_map()) > (stdin in selector.get_map()) and not captured.killed_for:
                left = deadline - time.monotonic()
                if left <= 0:
                    captured.killed_for = "timeout"
                    break
                for key, _ in selector.select(left):
                    if key.fd == stdin:
                        try:
                            sent += os.write(stdin, job[sent : sent + (1 << 16)])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # gone before reading its job: its stderr says why
                            sent = len(job)
                        if sent >= len(job):
                            selector.unregister(stdin)
                            process.stdin.close()
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    name, buffer, limit = buffers[key.fd]
                    if not chunk:
                        selector.unregister(key.fd)
                    elif len(buffer) + len(chunk) > limit:
                        buffer += chunk[: limit - len(buffer)]
                        captured.killed_for, captured.over = "output", name
                        break
                    else:
                        buffer += chunk
        if not captured.killed_for:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                captured.killed_for = "timeout"
        if captured.killed_for:
            _stop(process)
        _kill_group(process)  # before reaping: the group's id stays reserved while its leader is a zombie
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()
        return captured

    def _status(self, captured: _Captured, returncode: int, level: Level, seconds: float,
                timeout_s: float | None) -> tuple[Status, str]:
        stderr = captured.stderr.decode("utf-8", "replace")
        if captured.killed_for == "timeout":
            return "timeout", f"wall-clock limit of {timeout_s or self.timeout_s:g} s"
        if captured.killed_for == "output":
            return "output_limit", f"{captured.over} passed {self.max_output_bytes} bytes"
        if returncode == child.SETUP_EXIT and child.SETUP_PREFIX in stderr:
            return "sandbox_error", stderr.split(child.SETUP_PREFIX, 1)[1].strip()[:300]
        if returncode == child.MEMORY_EXIT:
            return "memory", f"memory limit of {self.memory_mb} MB (MemoryError)"
        died = -returncode if returncode < 0 else 0
        if level != "plain" and _SIGNAL_RETURN < returncode <= _SIGNAL_RETURN + 64:
            died = returncode - _SIGNAL_RETURN
        if died == signal.SIGXCPU or (died == signal.SIGKILL and seconds >= self.cpu_s):
            return "timeout", f"CPU-time limit of {self.cpu_s} s"
        if died:
            return "crash", f"killed by {_signal_name(died)}"
        if returncode == 0:
            return "passed", ""
        lines = [line for line in stderr.splitlines() if line.strip()]
        return "failed", (lines[-1].strip()[:300] if lines else f"exit status {returncode}")

    def _result(self, status: Status, reason: str, returncode: int | None, captured: _Captured, start: float,
                level: Level) -> Execution:
        cut = len(captured.stdout) >= self.max_output_bytes or len(captured.stderr) >= self.max_output_bytes
        return Execution(status, reason, returncode, captured.stdout.decode("utf-8", "replace"),
                         captured.stderr.decode("utf-8", "replace"), time.monotonic() - start, level, cut)

    @staticmethod
    def _reports(captured: _Captured, nonce: str) -> dict[int, TestResult]:
        """The test outcomes the start-up code reported (lines without the nonce are ignored)."""
        results: dict[int, TestResult] = {}
        for line in captured.report.decode("utf-8", "replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) == 4 and parts[0] == nonce and parts[1].isdigit():
                results.setdefault(int(parts[1]), TestResult(parts[2] == "1", parts[3]))
        return results


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a running child so that nothing of it is left once it is reaped. At the namespace
    levels the program is its wrapper's (``unshare``'s, ``bwrap``'s) child and PID 1 of its
    namespace: it is killed first, the kernel kills whatever else is in the namespace before its
    death is reported, and the wrapper, having reaped it, exits. Then (and at ``plain``, where the
    program is the child itself) the whole process group."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    if children:
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _remove(folder: str) -> None:
    """Remove ``folder``, also where a program took the write bit off its own folders."""

    def force(function: Any, path: str, _: Any) -> None:
        for target in (os.path.dirname(path), path):
            try:
                os.chmod(target, 0o700)
            except OSError:
                pass
        try:
            function(path)
        except FileNotFoundError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=force)
    else:
        shutil.rmtree(folder, onerror=force)
