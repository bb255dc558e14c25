"""The ``code`` task: the strict draft parse, validation in the sandbox (the reference passes, no
trivial stub does), and grading answers by running the tests."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infuser.data.questions import InvalidQuestion
from infuser.tasks.code import CodeTask
from infuser.tasks.code_problems import CodeProblem, parse_problem, write_problem
from tests.sandbox_support import executor_at

ADD = CodeProblem(statement="Return the sum of a and b.", signature="def add(a, b):",
                  tests=("assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 5) == 5"),
                  reference="def add(a, b):\n    return a + b", id="doc#q0", kind="add")


def draft(tests: tuple[str, ...] = ADD.tests, solution: str = ADD.reference, signature: str = ADD.signature) -> str:
    return "Problem: Return the sum of a and b.\nSignature: " + signature + "\n" + \
        "".join(f"Test: {test}\n" for test in tests) + "Solution:\n" + solution


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> CodeTask:
    executor = executor_at("auto", tmp_path_factory.mktemp("code-task"), timeout_s=3.0)
    return CodeTask(executor=executor)


def test_a_written_problem_parses_back_to_itself() -> None:
    assert parse_problem(write_problem(ADD)) == ADD.__class__(**{**ADD.__dict__, "id": "", "kind": ""})


def test_the_solver_sees_the_problem_and_signature_but_not_the_tests() -> None:
    assert ADD.render() == "Problem: Return the sum of a and b.\nSignature: def add(a, b):"
    assert "assert" not in ADD.render()
    assert ADD.entry_point == "add" and ADD.golden_answer == "passed"


def test_a_fenced_solution_and_a_multi_line_statement_are_read() -> None:
    text = ("Problem: Return the sum\nof a and b.\nSignature: def add(a, b):\n" +
            "".join(f"Test: {t}\n" for t in ADD.tests) + "Solution:\n```python\ndef add(a, b):\n    return a + b\n```")
    parsed = parse_problem(text)
    assert isinstance(parsed, CodeProblem)
    assert parsed.statement == "Return the sum of a and b." and parsed.reference == ADD.reference


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("x" * 9000, "too_long"),
    ("Question: what?", "no_problem_line"),
    ("Problem: add\nTest: assert add(1, 2) == 3", "no_signature"),
    (draft(signature="def add(a, b:"), "bad_signature"),
    (draft(signature="add(a, b)"), "bad_signature"),
    (draft(tests=ADD.tests[:2]), "too_few_tests"),
    (draft(tests=(*ADD.tests, ADD.tests[0])), "duplicate_tests"),
    (draft(tests=(*ADD.tests[:2], "add(1, 2) == 3")), "bad_test"),
    (draft(tests=(*ADD.tests[:2], "assert add(1, 2) == 3; import os")), "bad_test"),
    (draft(tests=(*ADD.tests[:2], "assert 1 + 2 == 3")), "test_without_call"),
    (draft(tests=(*ADD.tests[:2], "assert print(add(1, 2))")), "test_calls_other"),
    (draft(tests=(*ADD.tests[:2], "assert add(1, 2).real == 3")), "test_calls_other"),
    (draft(tests=(*ADD.tests[:2], "assert add(x, 2) == 3")), "test_calls_other"),
    (draft(tests=(*ADD.tests[:2], "assert add(__import__('os'), 2)")), "test_calls_other"),
    (draft(tests=(*ADD.tests[:2], "assert [add(i, 1) for i in (1, 2)] == [2, 3]")), "test_calls_other"),
    (draft(tests=(*ADD.tests[:2], "assert (lambda: add(1, 2))() == 3")), "test_calls_other"),
    (draft(solution=""), "no_solution"),
    (draft(solution="def add(a, b) return a"), "solution_syntax"),
    (draft(solution="def plus(a, b):\n    return a + b"), "solution_without_function"),
    (draft().replace("Solution:", "Answer:"), "unexpected_line"),
])
def test_a_malformed_draft_is_invalid_with_its_reason(text: str, reason: str) -> None:
    parsed = parse_problem(text)
    assert isinstance(parsed, InvalidQuestion) and parsed.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.builds(lambda tail: draft() + tail, st.text(max_size=100)))
def test_parsing_never_raises(text: str) -> None:
    assert isinstance(parse_problem(text), (CodeProblem, InvalidQuestion))


def test_validation_runs_the_reference_and_the_stubs(task: CodeTask) -> None:
    drafts = {
        "valid": draft(),
        "reference_fails": draft(solution="def add(a, b):\n    return a - b"),
        "vacuous_tests": draft(tests=("assert add(0, 0) == 0", "assert add(1, -1) == 0", "assert add(2, -2) == 0")),
        "vacuous_identity": draft(tests=("assert add(4, 0) == 4", "assert add(7, 0) == 7", "assert add(1, 0) == 1")),
        "reference_timeout": draft(solution="def add(a, b):\n    while True:\n        pass"),
    }
    parsed = task.parse_drafts(list(drafts.values()), [f"d#q{i}" for i in range(len(drafts))], random.Random(0))
    assert isinstance(parsed[0], CodeProblem) and parsed[0].id == "d#q0"
    reasons = [item.reason if isinstance(item, InvalidQuestion) else "valid" for item in parsed]
    assert reasons == ["valid", "reference_fails", "vacuous_tests", "vacuous_tests", "reference_timeout"]
    single = task.parse_draft(draft(), "one", random.Random(0))
    assert isinstance(single, CodeProblem) and single.id == "one"


def test_without_the_stub_check_vacuous_tests_are_kept(tmp_path) -> None:
    lenient = CodeTask(executor=executor_at("auto", tmp_path), check_stubs=False)
    text = draft(tests=("assert add(0, 0) == 0", "assert add(1, -1) == 0", "assert add(2, -2) == 0"))
    assert isinstance(lenient.parse_draft(text, "x", random.Random(0)), CodeProblem)


def test_answers_are_graded_by_running_the_tests(task: CodeTask, caplog: pytest.LogCaptureFixture) -> None:
    answers = [
        "def add(a, b):\n    return a + b",  # right
        "```python\ndef add(a, b):\n    return b + a\n```\nThis adds them.",  # right, fenced
        "    return a + b",  # right: a body, joined to the signature
        "def add(a, b):\n    return a * b",  # wrong
        "",  # no code
        "def add(a, b):\n    while True:\n        pass",  # timeout
        "import os\ndef add(a, b):\n    os._exit(0)",  # exits before any test can pass
    ]
    with caplog.at_level(logging.INFO, logger="infuser.tasks.code"):
        graded = task.grade([ADD], answers, num_samples=len(answers))
    assert graded.rewards.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert graded.answers[:5] == ["passed", "passed", "passed", "failed", "no_code"]
    assert graded.answers[5] == "timeout"
    assert graded.answers[6] != "passed"
    assert "timeout 1" in caplog.text


def test_the_fraction_reward_counts_passing_tests_but_not_after_an_abnormal_end(tmp_path) -> None:
    partial = CodeTask(executor=executor_at("auto", tmp_path, timeout_s=3.0), reward="fraction")
    answers = ["def add(a, b):\n    return a + b if a else 99",  # passes 2 of 3
               "def add(a, b):\n    if a == 0:\n        while True:\n            pass\n    return a + b"]  # 2, then hangs
    graded = partial.grade([ADD], answers, num_samples=2)
    assert graded.rewards.tolist() == pytest.approx([2 / 3, 0.0])
    assert graded.answers == ["failed", "timeout"]


def test_grading_a_multiple_choice_question_is_refused(task: CodeTask) -> None:
    from infuser.data.questions import MCQuestion

    question = MCQuestion(question="2+2?", options=("4", "5"), answer_index=0)
    with pytest.raises(TypeError, match="programming problems"):
        task.grade([question], ["A"], 1)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_tests"):
        CodeTask(min_tests=0)
    with pytest.raises(ValueError, match="reward"):
        CodeTask(reward="most")  # type: ignore[arg-type]


def test_a_jsonl_file_of_problems_loads_and_a_bad_row_names_its_line_and_field(tmp_path) -> None:
    import json

    from infuser.data.question_sets import QuestionSetError
    from infuser.tasks.code_problems import JsonlCodeProblems

    row = {"id": "p1", "statement": ADD.statement, "signature": ADD.signature, "tests": list(ADD.tests),
           "reference": ADD.reference, "kind": "add"}
    good = tmp_path / "problems.jsonl"
    good.write_text(json.dumps(row) + "\n\n" + json.dumps({**row, "id": "p2"}) + "\n")
    problems = JsonlCodeProblems(str(good)).load()
    assert [p.id for p in problems] == ["p1", "p2"] and problems[0].tests == ADD.tests and problems[0].kind == "add"
    for broken, message in (({**row, "signature": "add(a, b)"}, "2: field 'signature'"),
                            ({**row, "tests": []}, "2: field 'tests'"),
                            ({**row, "reference": ""}, "2: field 'reference'")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(row) + "\n" + json.dumps(broken) + "\n")
        with pytest.raises(QuestionSetError, match=f"bad.jsonl:{message}"):
            JsonlCodeProblems(str(bad)).load()
        assert [p.id for p in JsonlCodeProblems(str(bad), skip_invalid=True).load()] == ["p1"]


def test_majority_vote_labels_and_several_processes_are_refused_naming_why() -> None:
    from infuser.config import ConfigurationError, LoopConfig, RoleConfig, RunSetup

    task = CodeTask()
    task.check_setup(RunSetup(RoleConfig(), RoleConfig(), LoopConfig(), "auto", False))
    with pytest.raises(ConfigurationError, match="loop.solver_labels: majority_vote"):
        task.check_setup(RunSetup(RoleConfig(), RoleConfig(), LoopConfig(solver_labels="majority_vote"), "auto", False))
    task.check_processes(1)
    with pytest.raises(ConfigurationError, match="one process"):
        task.check_processes(2)


def test_question_records_of_programming_problems_carry_their_tests() -> None:
    from infuser.records import QuestionRecord

    record = QuestionRecord(iteration=1, document_id="d", text="t", valid=True)
    assert "tests" not in record.as_row()  # a multiple-choice record is what it was
    for name, value in ADD.record_fields().items():
        setattr(record, name, value)
    row = record.as_row()
    assert row["tests"] == ADD.tests and row["answer"] == ADD.reference and row["question"] == ADD.render()
