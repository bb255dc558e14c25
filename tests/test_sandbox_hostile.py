"""Hostile programs in the sandbox, at every isolation level this machine has (the others skipped,
naming the level): each comes back as a failure with a reason, and the trainer (this test process,
its files, its environment, a process of its own, a socket it listens on) is unharmed; afterwards
no sandboxed process is alive and no working directory is left.

The ``plain`` level runs a program as the trainer's user without namespaces: it cannot keep the
program from that user's files (``/proc/<pid>/environ`` included). Those assertions, and only
those, are skipped there, with the reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import assert_nothing_left, executor_at, processes_with

from infuser.sandbox.isolation import LEVELS, NOT_ISOLATED
from infuser.sandbox.local import LocalExecutor

MARKER = f"infuser-hostile-{uuid.uuid4().hex}"


@pytest.fixture(scope="module", params=LEVELS)
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalExecutor]:
    tmp_dir = tmp_path_factory.mktemp(f"work-{request.param}")
    executor = executor_at(request.param, tmp_dir)
    yield executor
    assert_nothing_left(executor, tmp_dir, MARKER)


@pytest.fixture(autouse=True)
def nothing_left_after_each(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        executor = request.getfixturevalue("sandbox")
        assert_nothing_left(executor, Path(executor.tmp_dir), MARKER)
        assert executor.run("print('still working')").stdout == "still working\n"


def _skip_file_assertions_at_plain(executor: LocalExecutor) -> None:
    if executor.isolation == "plain":
        pytest.skip(f"isolation level plain: {NOT_ISOLATED['plain']}")


def test_endless_programs_are_stopped_at_the_limit(sandbox):
    busy, sleeping = sandbox.run_many(["while True:\n    pass", "import time\ntime.sleep(600)"])
    for execution in (busy, sleeping):
        assert execution.status == "timeout" and execution.reason
        assert execution.seconds < sandbox.timeout_s + 1.5


def test_the_cpu_limit_stops_a_busy_program_first(sandbox, tmp_path):
    executor = LocalExecutor(isolation=sandbox.isolation, timeout_s=15.0, cpu_s=1, memory_mb=256, tmp_dir=str(tmp_path))
    execution = executor.run("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass")
    assert execution.status == "timeout" and "CPU" in execution.reason, execution
    assert execution.seconds < 14


def test_a_fork_bomb_starts_no_process(sandbox):
    program = f"""
import os, subprocess, threading
attempts = []
for attempt in (lambda: os.fork(), lambda: subprocess.Popen(["sleep", "30", "{MARKER}"]),
                lambda: threading.Thread(target=print).start(),
                lambda: os.posix_spawn("/bin/sleep", ["sleep", "30", "{MARKER}"], {{}})):
    try:
        attempt()
        attempts.append("started")
    except Exception as error:
        attempts.append(type(error).__name__)
print(attempts)
while True:
    os.fork()
"""
    execution = sandbox.run(program)
    assert execution.status == "failed" and "PermissionError" in execution.reason
    assert "started" not in execution.stdout
    assert processes_with(MARKER) == []


def test_memory_blow_up(sandbox):
    for program in ("x = bytearray(10 ** 11)", "blocks = []\nwhile True:\n    blocks.append(bytearray(10 ** 7))"):
        execution = sandbox.run(program)
        assert execution.status == "memory" and "MemoryError" in execution.reason


def test_deep_recursion(sandbox):
    execution = sandbox.run("def down(n):\n    return down(n + 1)\ndown(0)")
    assert execution.status == "failed" and "RecursionError" in execution.reason
    unbounded = sandbox.run("import sys\nsys.setrecursionlimit(10 ** 9)\n"
                            "def down(n):\n    return down(n + 1)\ndown(0)")
    assert unbounded.status in ("crash", "timeout", "memory") and unbounded.reason


def test_a_segfault_through_ctypes_is_a_crash(sandbox):
    execution = sandbox.run("import ctypes\nctypes.string_at(0)")
    assert execution.status == "crash" and "SIGSEGV" in execution.reason


def test_huge_output_is_cut_and_stopped(sandbox):
    for program in ("print('x' * 10 ** 8)", "while True:\n    print('y' * 1000)",
                    "import sys\nwhile True:\n    sys.stderr.write('z' * 1000)"):
        execution = sandbox.run(program)
        assert execution.status == "output_limit" and execution.truncated
        assert max(len(execution.stdout), len(execution.stderr)) == sandbox.max_output_bytes


@pytest.mark.parametrize("program, test", [
    ("import sys\nsys.exit(0)", "assert True"),
    ("import os\nos._exit(0)", "assert True"),
    ("import os\ndef f():\n    os._exit(0)", "f()"),
    ("import sys\ndef f():\n    sys.exit(0)", "f()"),
    ("def f():\n    raise SystemExit(0)", "f()"),
])
def test_exiting_early_passes_no_test(sandbox, program, test):
    run = sandbox.run_tests(program, [test, "assert True"])
    assert run.passed == 0 or (run.passed == 1 and run.results[1].passed and not run.results[0].passed)
    assert not run.all_passed and run.reason


def test_signals_cannot_reach_the_trainer(sandbox):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        program = f"""
import os, signal
for target in (lambda: os.kill({victim.pid}, signal.SIGKILL), lambda: os.kill({os.getpid()}, signal.SIGKILL),
               lambda: os.kill(os.getppid(), signal.SIGKILL),
               lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL),
               lambda: os.killpg({os.getpgid(0)}, signal.SIGKILL), lambda: os.kill(-1, signal.SIGKILL),
               lambda: os.kill(0, signal.SIGKILL)):
    try:
        target()
        print("sent")
    except OSError as error:
        print(type(error).__name__)
"""
        execution = sandbox.run(program)
        assert execution.status == "passed", execution
        assert "sent" not in execution.stdout and len(execution.stdout.split()) == 7
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_files_outside_the_working_directory_are_untouched(sandbox, tmp_path):
    _skip_file_assertions_at_plain(sandbox)
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    created = tmp_path / "created.txt"
    program = f"""
import os, shutil
for attempt in (lambda: os.remove({str(sentinel)!r}), lambda: open({str(sentinel)!r}, "w").write("pwned"),
                lambda: open({str(created)!r}, "w").write("pwned"), lambda: shutil.rmtree({str(tmp_path)!r}),
                lambda: open({os.path.abspath(__file__)!r}, "a").write("pwned"), lambda: os.chmod("/usr", 0o777)):
    try:
        attempt()
        print("done")
    except OSError as error:
        print(type(error).__name__)
open("mine.txt", "w").write("the working directory is writable")
print(open("mine.txt").read())
"""
    execution = sandbox.run(program)
    assert execution.status == "passed", execution
    assert "done" not in execution.stdout and "the working directory is writable" in execution.stdout
    assert sentinel.read_text() == "keep me" and not created.exists()


def test_the_trainers_files_cannot_be_read(sandbox, tmp_path):
    _skip_file_assertions_at_plain(sandbox)
    secret = uuid.uuid4().hex
    (tmp_path / "secret.txt").write_text(secret)
    program = f"""
import os
for path in ({str(tmp_path / 'secret.txt')!r}, "/proc/{os.getpid()}/environ", "/proc/{os.getpid()}/cmdline",
             {os.path.abspath(__file__)!r}, {sys.executable!r}):
    try:
        print(open(path, "rb").read()[:200])
    except OSError as error:
        print(type(error).__name__)
"""
    execution = sandbox.run(program)
    assert secret not in execution.stdout + execution.stderr
    assert "infuser-hostile" not in execution.stdout  # this file's text


def test_a_secret_in_the_trainers_environment_is_not_inherited(sandbox, monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("INFUSER_TEST_SECRET_TOKEN", secret)
    execution = sandbox.run("import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())")
    assert execution.status == "passed" and secret not in execution.stdout
    assert "INFUSER_TEST_SECRET_TOKEN" not in execution.stdout
    _skip_file_assertions_at_plain(sandbox)  # the trainer's own environ is one of its files there
    parent = sandbox.run(f"print(open('/proc/{os.getpid()}/environ').read())")
    assert secret not in parent.stdout + parent.stderr


def test_sockets_cannot_connect(sandbox, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        program = f"""
import socket
for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1),
                lambda: socket.socket(socket.AF_UNIX).connect({str(tmp_path / 'unix.sock')!r}),
                lambda: socket.socket(socket.AF_INET6), lambda: socket.getaddrinfo("example.com", 80)):
    try:
        attempt()
        print("connected")
    except OSError as error:
        print(type(error).__name__)
"""
        execution = sandbox.run(program)
        assert execution.status == "passed", execution
        assert "connected" not in execution.stdout
        with pytest.raises(BlockingIOError):
            server.accept()


def test_no_shell_and_no_other_program(sandbox, tmp_path):
    pwned = tmp_path / "pwned"
    program = f"""
import os, subprocess
print(os.system("echo pwned > {pwned} # {MARKER}"))
for attempt in (lambda: subprocess.run("echo pwned > {pwned}", shell=True),
                lambda: os.execv("/bin/sh", ["sh", "-c", "echo pwned > {pwned}"])):
    try:
        attempt()
    except OSError as error:
        print(type(error).__name__)
"""
    execution = sandbox.run(program)
    assert execution.status == "passed", execution
    assert execution.stdout.split()[1:] == ["PermissionError", "PermissionError"]
    assert not pwned.exists()


def test_limits_cannot_be_raised_again(sandbox):
    program = """
import resource
for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE):
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("raised")
    except (ValueError, OSError) as error:
        print(type(error).__name__)
"""
    execution = sandbox.run(program)
    assert execution.status == "passed" and "raised" not in execution.stdout
