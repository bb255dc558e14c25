"""The executor's interface: statuses, per-test counts, the pool, the isolation choice, the
``executor`` component kind (registry, ``infuser list``, YAML). Hostile programs are
``test_sandbox_hostile.py``'s."""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import assert_nothing_left, executor_at

from infuser import cli, registry
from infuser.sandbox import isolation, local
from infuser.sandbox.base import Execution, Executor, TestCase, TestResult, TestRun
from infuser.sandbox.isolation import LEVELS
from infuser.sandbox.local import LocalExecutor

ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalExecutor]:
    """The level ``auto`` picks here."""
    tmp_dir = tmp_path_factory.mktemp("work")
    chosen = executor_at("auto", tmp_dir)
    yield chosen
    assert_nothing_left(chosen, tmp_dir)


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_runs_programs_and_tests_alike(level, tmp_path):
    executor = executor_at(level, tmp_path)
    assert executor.isolation == level
    execution = executor.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert (execution.status, execution.stdout, execution.stderr) == ("passed", "out\n", "err\n")
    assert execution.returncode == 0
    assert execution.isolation == level and execution.seconds > 0 and not execution.truncated
    run = executor.run_tests(ADD, ["assert add(1, 2) == 3", "assert add(1, 2) == 4"], "add")
    assert (run.passed, run.total, run.status) == (1, 2, "failed")
    failed = executor.run("raise ValueError('no')")
    assert failed.status == "failed" and failed.reason == "ValueError: no" and failed.returncode == 1
    assert 'File "program.py", line 1' in failed.stderr and "<string>" not in failed.stderr
    assert executor.run("import sys\nsys.exit(3)").returncode == 3
    assert executor.run("import sys\nsys.stdout.write('no newline')").stdout == "no newline"  # flushed
    # the label ends every command line the executor starts: its processes are told apart from any other's
    assert executor.run("import sys\nprint(sys.argv[-1])").stdout == f"{executor.label}\n"
    assert_nothing_left(executor, tmp_path)


def test_run_tests_counts_each_test(executor):
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 5, 'two and two'", "assert add(0, 0) == 0", "add(None, 1)"]
    run = executor.run_tests(ADD, tests)
    assert [r.passed for r in run.results] == [True, False, True, False]
    assert (run.passed, run.total, run.fraction, run.status, run.all_passed) == (2, 4, 0.5, "failed", False)
    assert run.results[1].reason == "AssertionError: two and two" and run.reason == "AssertionError: two and two"
    assert run.results[3].reason.startswith("TypeError")
    every = executor.run_tests(ADD, tests[:1] + tests[2:3])
    assert every.all_passed and every.status == "passed" and every.fraction == 1.0 and every.reason == ""


def test_check_is_called_on_the_entry_point(executor):
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert executor.run_tests(ADD, [check], "add").all_passed
    wrong = executor.run_tests(ADD.replace("a + b", "a * b"), [check], "add")
    assert not wrong.all_passed and wrong.results[0].reason == "AssertionError"
    missing = executor.run_tests("def plus(a, b):\n    return a + b\n", [check], "add")
    assert missing.results[0].reason == "NameError: the program does not define 'add'"
    # the program's own `check` is not the test's: a test that defines none runs as plain asserts
    own = executor.run_tests(ADD + "def check(c):\n    raise SystemExit\n", ["assert add(1, 1) == 2"], "add")
    assert own.all_passed
    main_guard = executor.run_tests(ADD + "if __name__ == '__main__':\n    raise SystemExit(1)\n", [check], "add")
    assert main_guard.all_passed


def test_a_stopped_run_keeps_the_tests_that_passed_before(executor):
    run = executor.run_tests(ADD, ["assert add(1, 1) == 2", "while True:\n    pass", "assert True"])
    assert run.status == "timeout" and run.passed == 1 and run.total == 3
    assert run.results[2] == TestResult(False, f"not run (timeout: wall-clock limit of {executor.timeout_s:g} s)")
    broken = executor.run_tests("def add(:\n", ["assert True", "assert True"])
    assert broken.passed == 0 and broken.results[0].reason.startswith("program: SyntaxError")


def test_forged_reports_do_not_count(executor):
    forger = textwrap.dedent("""
        import os
        for fd in range(3, 256):
            for index in range(3):
                try:
                    os.write(fd, f"{'0' * 32}\\t{index}\\t1\\t\\n".encode())
                except OSError:
                    pass
        """)
    run = executor.run_tests(forger, ["assert False", "assert False", "assert False"])
    assert run.passed == 0 and run.status == "failed"


def test_batches_keep_their_order_and_run_side_by_side(executor):
    programs = [f"import time\ntime.sleep(0.5)\nprint({i})" for i in range(4)]
    start = time.monotonic()
    results = executor.run_many(programs)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert executor.max_workers == 2 and time.monotonic() - start < 1.9  # one at a time would take 2 s
    runs = executor.run_tests_many([TestCase(ADD, ("assert add(1, 1) == 2",)), TestCase(ADD, ("assert False",)),
                                    TestCase("x = 1", ("assert x == 1",))])
    assert [run.all_passed for run in runs] == [True, False, True]


def test_results_are_small_typed_values():
    execution = Execution("timeout", "wall-clock limit of 2 s", -9, "", "", 2.0, "unshare")
    run = TestRun(execution, (TestResult(True), TestResult(False, "not run")))
    assert (run.status, run.passed, run.fraction, run.reason, run.all_passed) == (
        "timeout", 1, 0.5, "wall-clock limit of 2 s", False)
    assert TestRun(Execution("passed", "", 0, "", "", 0.1, "plain")).status == "failed"  # no test: nothing passed


def test_auto_falls_back_to_plain_with_a_one_line_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(local, "available", lambda level: level == "plain")
    monkeypatch.setattr(local, "_PROBED", {})
    with caplog.at_level(logging.WARNING, logger="infuser.sandbox.local"):
        chosen = LocalExecutor(tmp_dir=str(tmp_path))
    assert chosen.isolation == "plain"
    [warning] = caplog.messages
    assert "\n" not in warning and "bwrap: not installed" in warning and "unshare: not installed" in warning
    assert isolation.NOT_ISOLATED["plain"] in warning
    assert chosen.run("print(1)").stdout == "1\n"


def test_a_level_that_does_not_work_here_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "available", lambda level: level != "bwrap")
    monkeypatch.setattr(local, "_PROBED", {})
    with pytest.raises(RuntimeError, match="executor isolation 'bwrap' does not work here: bwrap: not installed"):
        LocalExecutor(isolation="bwrap", tmp_dir=str(tmp_path))


@pytest.mark.parametrize("options, message", [
    ({"timeout_s": 0}, "must be positive"), ({"memory_mb": 32}, "memory_mb must be >= 64"),
    ({"max_workers": 0}, "max_workers must be >= 1"), ({"isolation": "docker"}, "'docker' is not one of"),
    ({"python": "no-such-python-here"}, "is not an executable"),
    ({"readable_paths": ["/no/such/path"]}, "no such path"),
])
def test_bad_options_are_refused(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        LocalExecutor(tmp_dir=str(tmp_path), **options)


def test_describe_records_the_isolation_and_limits(executor):
    described = executor.describe()
    assert described["class"] == "infuser.sandbox.local.LocalExecutor"
    assert described["isolation"] == executor.isolation in LEVELS
    assert {"timeout_s", "cpu_s", "memory_mb", "file_size_mb", "max_output_bytes", "max_workers", "python",
            "seccomp"} <= set(described)


def test_executor_is_a_registered_component_kind(capsys):
    assert registry.KINDS["executor"].group == "infuser.executor"
    assert registry.resolve("executor", "local") is LocalExecutor
    assert issubclass(LocalExecutor, Executor)
    assert cli.main(["list", "executor"]) == 0
    out = capsys.readouterr().out
    assert "executor components (entry-point group infuser.executor):" in out
    assert "infuser.sandbox.local:LocalExecutor" in out and "isolation='auto'" in out


def test_executor_is_selected_from_yaml(tmp_path: Path):
    config = tmp_path / "eval.yaml"
    config.write_text(textwrap.dedent(f"""
        benchmarks: [{{name: supergpqa}}]
        predictions: preds.jsonl
        executor:
          class_path: local
          init_args: {{timeout_s: 3.0, max_workers: 1, memory_mb: 512, tmp_dir: {str(tmp_path)!r}}}
    """))
    parser = cli.build_parser()
    parsed = parser.instantiate(parser.parse_args(cli.expand_argv(["eval", "--config", str(config)])))
    chosen = parsed.eval.executor
    assert isinstance(chosen, LocalExecutor)
    assert (chosen.timeout_s, chosen.max_workers, chosen.memory_mb) == (3.0, 1, 512)
    flags = parser.parse_args(cli.expand_argv(["eval", "--config", str(config), "--executor", "local"]))
    assert flags.eval.executor.class_path == "infuser.sandbox.local.LocalExecutor"
