"""Bounded input size and a per-item time limit that works from any thread.

Judging runs regular expressions and sympy on untrusted model output. Some inputs make sympy (or
a regex) run for minutes or allocate gigabytes: ``10^{10^{10}}``, deeply nested braces, a megabyte
of text. The usual ``signal.alarm`` guard (math-verify's own) only works in the main thread of the
main interpreter, and a Python thread cannot be stopped from outside. So the work runs in a child
process: the parent sends it ``(function, arguments)``, waits on the pipe with a deadline, and when
the deadline passes it kills the child and starts a fresh one for the next item. Nothing in this
module depends on signals, so it is safe to call from Lightning callbacks, data-loader threads or
a thread pool.

The child is started with ``subprocess`` (not ``multiprocessing``) so that it never re-imports the
caller's ``__main__`` script, and it gets an address-space limit so one runaway expression cannot
take the machine's memory with it. Functions are sent by reference (pickle stores their module
and name), so they must be defined at module level in an importable module.

POSIX only (the pipes are polled with ``select``).
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

_HEADER = struct.Struct("!Q")
_MAX_FRAME = 256 * 1024 * 1024


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened to one limited call.

    Attributes:
        status: ``"ok"`` (``value`` holds the result), ``"timeout"`` (the child was killed after
            ``timeout_s``) or ``"error"`` (the function raised, or the child died; ``error`` says
            what).
        value: the function's return value when ``status == "ok"``.
        error: a one-line description of the failure, otherwise ``None``.
        seconds: wall time spent waiting for the child.
    """

    status: Literal["ok", "timeout", "error"]
    value: T | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class WorkerStartError(RuntimeError):
    """The child process could not be started or did not report ready in time."""


def _write_frame(stream: Any, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """Read exactly ``n`` bytes from ``fd``; ``None`` when the deadline passes first.

    Raises:
        EOFError: the child closed its end (it died).
    """
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("worker closed its pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None) -> bytes | None:
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise EOFError(f"worker sent an oversized frame ({size} bytes)")
    # Once the header is here the child has written the whole frame; give it a grace period.
    body_deadline = None if deadline is None else max(deadline, time.monotonic() + 5.0)
    return _read_exact(fd, size, body_deadline)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap; give up on it
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:  # pragma: no cover
            pass


def _child_env() -> dict[str, str]:
    """The child's environment: the parent's, plus the parent's import path.

    The package may be used from a source checkout (``PYTHONPATH=src``) or from a test directory
    pytest put on ``sys.path``; the child must import the same modules as the parent.
    """
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # One sympy item per process; keep BLAS/OpenMP from spawning thread pools in the child.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = "1"
    return env


class LimitedWorker:
    """One child process that runs functions under a per-call time limit.

    Thread-safe: calls are serialised by a lock. On a timeout the child is killed and the next call
    starts a new one (its start-up time does not count against that call's limit).

    Args:
        timeout_s: wall-clock limit for one call.
        memory_limit_mb: address-space limit of the child (``RLIMIT_AS``); ``0`` for none.
        preload: modules (``"pkg.mod"``) to import, or functions (``"pkg.mod:func"``) to call with
            no arguments, when the child starts, so that import and warm-up time is not charged to
            the first item.
        start_timeout_s: how long the child may take to start and preload.
    """

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_limit_mb: int = 4096,
        preload: Sequence[str] = (),
        start_timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if memory_limit_mb < 0:
            raise ValueError(f"memory_limit_mb must be >= 0, got {memory_limit_mb}")
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.preload = tuple(preload)
        self.start_timeout_s = float(start_timeout_s)
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    # -- process management -------------------------------------------------------------
    def _start(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-c",
            "from infuser.eval.limits import _child_main; _child_main()",
            str(self.memory_limit_mb),
            *self.preload,
        ]
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                env=_child_env(), bufsize=0, close_fds=True,
            )
        except OSError as exc:
            raise WorkerStartError(f"could not start the judge worker: {exc}") from exc
        assert proc.stdout is not None
        try:
            frame = _read_frame(proc.stdout.fileno(), time.monotonic() + self.start_timeout_s)
        except EOFError:
            frame = b""
        if not frame:
            _kill(proc)
            why = "did not report ready in time" if frame is None else f"exited with code {proc.returncode}"
            raise WorkerStartError(f"the judge worker {why} (preload: {', '.join(self.preload) or 'none'})")
        status, detail = pickle.loads(frame)
        if status != "ready":
            _kill(proc)
            raise WorkerStartError(f"the judge worker failed to start: {detail}")
        self._finalizer = weakref.finalize(self, _kill, proc)
        return proc

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self._discard()
            self._proc = self._start()
        return self._proc

    def _discard(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # kills and reaps
            self._finalizer = None
        self._proc = None

    def close(self) -> None:
        """Stop the child process (idempotent)."""
        with self._lock:
            self._discard()

    def start(self) -> None:
        """Start the child now instead of on the first call."""
        with self._lock:
            self._ensure()

    @property
    def running(self) -> bool:
        """Whether a child is up (``False`` after a timeout or a death killed it, until the next
        call or :meth:`start`)."""
        return self._proc is not None and self._proc.poll() is None

    # -- calls ----------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> Outcome[T]:
        """Run ``fn(*args)`` in the child within the time limit; never raises for ``fn``'s sake.

        Raises:
            WorkerStartError: the child could not be (re)started at all.
            pickle.PicklingError / TypeError: ``fn`` or ``args`` cannot be sent.
        """
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            start = time.monotonic()
            try:
                _write_frame(proc.stdin, payload)
                frame = _read_frame(proc.stdout.fileno(), start + limit)
            except (EOFError, BrokenPipeError, OSError) as exc:
                self._discard()
                self.restarts += 1
                return Outcome("error", error=f"worker died: {exc}", seconds=time.monotonic() - start)
            elapsed = time.monotonic() - start
            if frame is None:
                self._discard()
                self.restarts += 1
                return Outcome("timeout", error=f"exceeded {limit:g} s", seconds=elapsed)
        status, value = pickle.loads(frame)
        if status == "ok":
            return Outcome("ok", value=value, seconds=elapsed)
        return Outcome("error", error=str(value), seconds=elapsed)

    def __enter__(self) -> LimitedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LimitedPool:
    """Several :class:`LimitedWorker` children behind one ``call``/``map`` interface.

    ``map`` fans the calls out over the workers with a thread pool; the results keep the input
    order. With ``workers=1`` this is a plain loop over one child. A worker whose child was killed
    starts its successor at once, on a thread of its own, and rejoins the free workers when it is
    ready: with several workers the others keep judging meanwhile.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 5.0,
        memory_limit_mb: int = 4096,
        preload: Sequence[str] = (),
        start_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.timeout_s = float(timeout_s)
        self._workers = [
            LimitedWorker(timeout_s, memory_limit_mb, preload, start_timeout_s) for _ in range(workers)
        ]
        self._idle: queue.Queue[LimitedWorker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)
        self._restarting: list[threading.Thread] = []

    @property
    def restarts(self) -> int:
        """How many children were killed (timeouts and deaths) so far."""
        return sum(w.restarts for w in self._workers)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> Outcome[T]:
        """Run one call on whichever worker is free (``timeout_s`` overrides the pool's limit)."""
        worker = self._idle.get()
        try:
            outcome = worker.call(fn, *args, timeout_s=timeout_s)
        except BaseException:
            self._idle.put(worker)
            raise
        if worker.running:
            self._idle.put(worker)
        else:
            restart = threading.Thread(target=self._restart, args=(worker,), daemon=True)
            self._restarting = [t for t in self._restarting if t.is_alive()] + [restart]
            restart.start()
        return outcome

    def _restart(self, worker: LimitedWorker) -> None:
        try:
            worker.start()
        except WorkerStartError:
            pass  # the next call on this worker tries again and raises it
        finally:
            self._idle.put(worker)

    def map(
        self, fn: Callable[..., T], arg_tuples: Iterable[tuple[Any, ...]], timeouts: Sequence[float] | None = None
    ) -> list[Outcome[T]]:
        """``[call(fn, *args) for args in arg_tuples]``, spread over the workers; ``timeouts``
        gives each call its own limit."""
        jobs = list(arg_tuples)
        limits: list[float | None] = list(timeouts) if timeouts is not None else [None] * len(jobs)
        if len(limits) != len(jobs):
            raise ValueError(f"{len(jobs)} calls but {len(limits)} timeouts")
        if len(self._workers) == 1 or len(jobs) <= 1:
            return [self.call(fn, *args, timeout_s=limit) for args, limit in zip(jobs, limits)]
        with ThreadPoolExecutor(max_workers=len(self._workers)) as executor:
            return list(executor.map(lambda job: self.call(fn, *job[0], timeout_s=job[1]), zip(jobs, limits)))

    def close(self) -> None:
        """Stop every child (idempotent); waits for restarts under way."""
        for restart in self._restarting:
            restart.join()
        self._restarting = []
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> LimitedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child_main() -> None:  # pragma: no cover - runs in the child process
    """Serve ``(fn, args)`` frames on stdin until it closes; answer on the original stdout."""
    import importlib
    import logging

    memory_limit_mb = int(sys.argv[1])
    preload = sys.argv[2:]
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from judged code must not corrupt the protocol
    sys.stdout = sys.stderr
    logging.disable(logging.WARNING)  # math-verify warns once per call when its own timeout is off
    try:
        if memory_limit_mb > 0:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for entry in preload:
            module_name, _, func_name = entry.partition(":")
            module = importlib.import_module(module_name)
            if func_name:
                getattr(module, func_name)()
    except BaseException as exc:  # report any start-up failure to the parent, then exit
        _write_frame(protocol_out, pickle.dumps(("failed", f"{type(exc).__name__}: {exc}")))
        return
    _write_frame(protocol_out, pickle.dumps(("ready", None)))
    stdin_fd = sys.stdin.fileno()
    while True:
        try:
            frame = _read_frame(stdin_fd, None)
        except EOFError:
            return
        if frame is None:  # pragma: no cover - no deadline, cannot happen
            continue
        try:
            fn, args = pickle.loads(frame)
            reply = ("ok", fn(*args))
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # the parent decides what an error means
            data = pickle.dumps(("error", f"{type(exc).__name__}: {str(exc)[:500]}"))
        _write_frame(protocol_out, data)
