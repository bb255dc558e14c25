"""Programming problems: what the ``code`` task's Generator drafts and its Solver solves.

A draft states a problem, the signature of the one function that solves it, at least three
one-line ``assert`` tests and a reference solution::

    Problem: Return the sum of a and b.
    Signature: def add(a, b):
    Test: assert add(1, 2) == 3
    Test: assert add(-1, 1) == 0
    Test: assert add(0, 5) == 5
    Solution:
    def add(a, b):
        return a + b

The problem may run over several lines (up to ``Signature:``); the solution runs to the end of the
draft and may sit in a markdown fence. :func:`parse_problem` reads a draft strictly and without
running anything: the signature, every test and the solution are parsed with :mod:`ast` (which
builds a syntax tree and evaluates nothing), bounded in size. A test is accepted only when it is
one ``assert`` whose expression is made of literals, operators, subscripts and calls *of the named
function* (no other name, call, attribute or comprehension): a test can then neither reach
anything but the function under test, nor pass without calling it. Whether the reference passes
its tests, and whether a trivial stub fails them, is checked by running them in the sandbox
(:class:`infuser.tasks.code.CodeTask`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from infuser.data.question_sets import JsonlQuestions, QuestionSetError, is_text, json_object
from infuser.data.questions import InvalidQuestion

MAX_DRAFT_CHARS = 8192
MAX_TESTS = 16
PASSED = "passed"
"""What a right answer's entry in :class:`~infuser.tasks.base.Graded` ``answers`` is (the run's status)."""

_SIGNATURE = re.compile(r"def[ \t]+([A-Za-z_][A-Za-z0-9_]{0,63})[ \t]*\([^\n]{0,300}\)[ \t]*(?:->[^\n]{1,100})?:")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:\n[ \t]*```[ \t]*)?\s*\Z", re.DOTALL | re.IGNORECASE)

# What a test's expression may hold: literals, containers, operators, subscripts, conditionals and
# calls (checked to call the function under test). Names are checked to be that function.
_TEST_NODES = (ast.Module, ast.Assert, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Call,
               ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Subscript, ast.Slice,
               ast.keyword, ast.expr_context, ast.operator, ast.cmpop, ast.boolop, ast.unaryop)


@dataclass(frozen=True)
class CodeProblem:
    """A programming problem with its tests and a reference solution.

    Attributes:
        statement: what the function must do.
        signature: its ``def`` line (``def add(a, b):``).
        tests: one-line ``assert`` statements calling it.
        reference: a solution (Python source defining the function).
        id, kind, difficulty: as :class:`~infuser.data.questions.MCQuestion`'s.
    """

    statement: str
    signature: str
    tests: tuple[str, ...]
    reference: str
    id: str = ""
    kind: str = ""
    difficulty: str = ""

    def __post_init__(self) -> None:
        if _SIGNATURE.fullmatch(self.signature) is None:
            raise ValueError(f"signature: expected a line 'def name(args):', got {self.signature!r}")

    @property
    def entry_point(self) -> str:
        """The function's name."""
        match = _SIGNATURE.fullmatch(self.signature)
        assert match is not None  # checked in __post_init__
        return match.group(1)

    @property
    def golden_answer(self) -> str:
        """A right answer passes every test: its graded answer is the run's status, ``passed``."""
        return PASSED

    def render(self) -> str:
        """The problem and the signature, as the Solver sees them (the tests stay hidden: an answer
        that read them could return their expected values)."""
        return f"Problem: {self.statement}\nSignature: {self.signature}"

    def record_fields(self) -> dict[str, object]:
        """The question record's fields (``questions/iter_*.jsonl``)."""
        return {"question": self.render(), "answer": self.reference, "tests": self.tests}


def write_problem(problem: CodeProblem) -> str:
    """What a well-behaved Generator writes for ``problem``: the inverse of :func:`parse_problem`."""
    tests = "".join(f"Test: {test}\n" for test in problem.tests)
    return f"{problem.render()}\n{tests}Solution:\n{problem.reference.strip()}"


def parse_problem(text: str, min_tests: int = 3) -> CodeProblem | InvalidQuestion:
    """Strictly parse a draft (see the module docstring); never raises on any input string."""
    if len(text) > MAX_DRAFT_CHARS:
        return InvalidQuestion("too_long", text[:200])
    lines = text.strip().splitlines()
    if not lines or not text.strip():
        return InvalidQuestion("empty", text)
    if not lines[0].startswith("Problem:") or not lines[0][len("Problem:"):].strip():
        return InvalidQuestion("no_problem_line", text)
    statement = [lines[0][len("Problem:"):].strip()]
    index = 1
    while index < len(lines) and not lines[index].startswith(("Signature:", "Test:", "Solution:")):
        statement.append(lines[index].strip())
        index += 1
    if index == len(lines) or not lines[index].startswith("Signature:"):
        return InvalidQuestion("no_signature", text)
    signature = lines[index][len("Signature:"):].strip()
    if _SIGNATURE.fullmatch(signature) is None or not _parses(f"{signature}\n    pass"):
        return InvalidQuestion("bad_signature", text)
    name = _SIGNATURE.fullmatch(signature).group(1)
    tests: list[str] = []
    index += 1
    while index < len(lines) and lines[index].startswith("Test:"):
        test = lines[index][len("Test:"):].strip()
        problem = _test_problem(test, name)
        if problem:
            return InvalidQuestion(problem, text)
        tests.append(test)
        index += 1
    if len(tests) < min_tests:
        return InvalidQuestion("too_few_tests", text)
    if len(tests) > MAX_TESTS:
        return InvalidQuestion("too_many_tests", text)
    if len(set(tests)) != len(tests):
        return InvalidQuestion("duplicate_tests", text)
    if index == len(lines) or lines[index].strip() != "Solution:":
        return InvalidQuestion("no_solution" if index == len(lines) else "unexpected_line", text)
    solution = _unfenced("\n".join(lines[index + 1:]))
    if not solution.strip():
        return InvalidQuestion("no_solution", text)
    tree = _tree(solution)
    if tree is None:
        return InvalidQuestion("solution_syntax", text)
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body):
        return InvalidQuestion("solution_without_function", text)
    return CodeProblem(statement=" ".join(part for part in statement if part), signature=signature,
                       tests=tuple(tests), reference=solution.strip("\n"))


def _test_problem(test: str, name: str) -> str:
    """Why ``test`` is not an acceptable test of function ``name`` ("" when it is)."""
    tree = _tree(test)
    if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return "bad_test"
    calls = 0
    for node in ast.walk(tree):
        if not isinstance(node, _TEST_NODES):
            return "test_calls_other"
        if isinstance(node, ast.Name) and node.id != name:
            return "test_calls_other"
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == name):
                return "test_calls_other"
            calls += 1
    return "" if calls else "test_without_call"


def _tree(source: str) -> ast.Module | None:
    """``source``'s syntax tree, or ``None`` when it is not Python (or too deeply nested to parse)."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _parses(source: str) -> bool:
    return _tree(source) is not None


def _unfenced(solution: str) -> str:
    """The solution without a surrounding markdown fence, if it has one."""
    match = _FENCE.fullmatch(solution.strip())
    return match.group(1) if match is not None else solution


class JsonlCodeProblems(JsonlQuestions):
    """Programming problems from a JSONL file (a ``code`` run's target or held-out set).

    One object per line: ``statement`` (what the function must do), ``signature`` (its ``def``
    line), ``tests`` (a list of Python statements, each run against the function; ``assert``
    lines, as drafts have, or anything else a test file holds), ``reference`` (a solution; only
    checked to be text here: the run never executes it), optional ``id``, ``kind``,
    ``difficulty``. The tests are run only in the sandbox, never read as anything but text here.

    Args:
        path, limit, skip_invalid: as :class:`~infuser.data.question_sets.JsonlQuestions`'s.
    """

    def parse_row(self, raw: bytes, number: int) -> CodeProblem:
        row = json_object(raw, number)
        for key in ("statement", "reference"):
            if not is_text(row.get(key)):
                raise QuestionSetError(f"{number}: field {key!r} must be a non-empty string of valid Unicode")
        signature = row.get("signature")
        if not isinstance(signature, str) or _SIGNATURE.fullmatch(signature.strip()) is None:
            raise QuestionSetError(f"{number}: field 'signature' must be a line 'def name(args):'")
        tests = row.get("tests")
        if not isinstance(tests, list) or not tests or not all(is_text(test) for test in tests):
            raise QuestionSetError(f"{number}: field 'tests' must be a non-empty list of non-empty strings")
        return CodeProblem(statement=row["statement"].strip(), signature=signature.strip(), tests=tuple(tests),
                           reference=row["reference"], id=str(row.get("id", number)), kind=str(row.get("kind", "")),
                           difficulty=str(row.get("difficulty", "")))
