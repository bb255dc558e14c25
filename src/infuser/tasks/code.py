"""Programming problems checked by execution: the ``code`` task.

The Generator drafts a problem, a signature, ``assert`` tests and a reference solution
(:mod:`infuser.tasks.code_problems` gives the format and the strict parse). A draft is valid only
when, besides parsing, its reference passes every test and each trivial stub fails at least one
(:data:`STUBS`: a function returning ``None``, ``0``, ``True`` or its first argument), run in the
sandbox; otherwise its reason is ``reference_fails`` (``reference_timeout``, ``reference_crash``...
for an abnormal end) or ``vacuous_tests``. The Solver reads the problem and the signature and
writes the function; its reward is 1 when every test passes (``reward: fraction``: the share of
tests that pass), 0 for an answer without code, and 0 for a run that ended abnormally (timeout,
memory, crash, output limit), whatever passed before it; the outcomes are logged.

Every program runs through the task's :class:`~infuser.sandbox.base.Executor` (the ``executor``
component), never in the trainer's process, as one batch per stage through the executor's
pool. Code is taken from an answer by :func:`infuser.answers.code.extract_code`'s rules (as ``infuser eval``'s HumanEval) (a fenced
block, else the whole answer); an answer that does not define the function is taken as its
body and joined to the signature.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from infuser.answers.code import defines, extract_code
from infuser.config import ConfigurationError
from infuser.data.questions import InvalidQuestion, Question
from infuser.lazy import TYPE_CHECKING, lazy_import
from infuser.sandbox.base import Executor, TestCase, TestRun
from infuser.tasks.base import Graded, Task
from infuser.tasks.code_problems import CodeProblem, parse_problem

if TYPE_CHECKING:
    import torch

    from infuser.config import RunSetup
else:
    torch = lazy_import("torch")  # parsing a command line imports this module, never torch

log = logging.getLogger(__name__)

STUBS: dict[str, str] = {
    "none": "return None",
    "zero": "return 0",
    "true": "return True",
    "first_argument": "return args[0] if args else None",
}
"""The trivial stubs a draft's tests must each reject: bodies of ``def <name>(*args, **kwargs):``."""

NO_CODE = "no_code"


class CodeTask(Task):
    """Programming problems with ``assert`` tests, run in a sandbox (see the module docstring).

    Args:
        executor: runs every program (default: :class:`~infuser.sandbox.local.LocalExecutor` with
            a 5 s limit per program and 512 MB, made at first use).
        min_tests: a draft with fewer tests is invalid (``too_few_tests``).
        reward: ``all_pass`` (1 when every test passes) or ``fraction`` (the share that pass).
        check_stubs: reject drafts whose tests a trivial stub passes (``vacuous_tests``).
    """

    def __init__(self, executor: Executor | None = None, min_tests: int = 3,
                 reward: Literal["all_pass", "fraction"] = "all_pass", check_stubs: bool = True) -> None:
        if min_tests < 1:
            raise ValueError(f"task: min_tests must be at least 1, got {min_tests}")
        if reward not in ("all_pass", "fraction"):
            raise ValueError(f"task: reward must be 'all_pass' or 'fraction', got {reward!r}")
        self.min_tests = min_tests
        self.reward = reward
        self.check_stubs = check_stubs
        self._executor = executor

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            from infuser.sandbox.local import LocalExecutor

            self._executor = LocalExecutor(timeout_s=5.0, memory_mb=512)
        return self._executor

    def check_setup(self, setup: RunSetup) -> None:
        if setup.loop.solver_labels == "majority_vote":
            raise ConfigurationError("loop.solver_labels: majority_vote cannot label programming problems (the "
                                     "majority's outcome may be a failure, and the tests already label every "
                                     "answer); use solver_labels: golden with task: code")

    def check_processes(self, processes: int) -> None:
        if processes > 1:
            raise ConfigurationError(f"task: code runs its programs on every process and does not yet share their "
                                     f"outcomes (a timeout on one process and not another would split the run); "
                                     f"run it on one process (this run has {processes})")

    def parse_draft(self, text: str, id: str, rng: random.Random) -> Question | InvalidQuestion:
        return self.parse_drafts([text], [id], rng)[0]

    def parse_drafts(self, texts: Sequence[str], ids: Sequence[str], rng: random.Random
                     ) -> list[Question | InvalidQuestion]:
        """Parse every draft, then run each parsed draft's reference and stubs against its tests,
        all in one batch."""
        parsed: list[Question | InvalidQuestion] = []
        for text, id in zip(texts, ids, strict=True):
            item = parse_problem(text, self.min_tests)
            parsed.append(item if isinstance(item, InvalidQuestion) else replace(item, id=id))
        problems = [(index, item) for index, item in enumerate(parsed) if isinstance(item, CodeProblem)]
        stubs = list(STUBS.values()) if self.check_stubs else []
        cases = [TestCase(program, problem.tests)
                 for _, problem in problems for program in (problem.reference, *_stub_programs(problem, stubs))]
        runs = iter(self.executor.run_tests_many(cases))
        for index, problem in problems:
            reference, stub_runs = next(runs), [next(runs) for _ in stubs]
            if not reference.all_passed:
                status = reference.status
                reason = "reference_fails" if status == "failed" else f"reference_{status}"
                parsed[index] = InvalidQuestion(reason, texts[index])
            elif any(run.all_passed for run in stub_runs):
                parsed[index] = InvalidQuestion("vacuous_tests", texts[index])
        return parsed

    def grade(self, questions: Sequence[Question], texts: Sequence[str], num_samples: int) -> Graded:
        problems = [_problem(questions[row // num_samples]) for row in range(len(texts))]
        programs = [self.program(problem, text) for problem, text in zip(problems, texts)]
        runnable = [row for row, program in enumerate(programs) if program is not None]
        runs = self.executor.run_tests_many([TestCase(programs[row], problems[row].tests) for row in runnable])
        rewards = [0.0] * len(texts)
        outcomes = [NO_CODE] * len(texts)
        for row, run in zip(runnable, runs):
            rewards[row] = self._reward(run)
            outcomes[row] = run.status
        abnormal = Counter(outcome for outcome in outcomes if outcome not in ("passed", "failed"))
        if abnormal:
            log.info("code task: %d of %d answers scored 0 for how they ended: %s", sum(abnormal.values()),
                     len(texts), ", ".join(f"{status} {count}" for status, count in sorted(abnormal.items())))
        return Graded(rewards=torch.tensor(rewards), answers=outcomes)

    @staticmethod
    def program(problem: CodeProblem, answer: str) -> str | None:
        """The program an answer makes (``None``: it holds no code): its code when that defines the
        function, else the signature followed by the code, taken as the body."""
        extraction = extract_code(answer)
        if extraction.missed:
            return None
        if defines(extraction.code, problem.entry_point):
            return extraction.code
        return f"{problem.signature}\n{extraction.code}"

    def _reward(self, run: TestRun) -> float:
        if run.execution.status not in ("passed", "failed"):  # an abnormal end: nothing counts
            return 0.0
        return run.fraction if self.reward == "fraction" else float(run.all_passed)


def _stub_programs(problem: CodeProblem, bodies: Sequence[str]) -> list[str]:
    return [f"def {problem.entry_point}(*args, **kwargs):\n    {body}\n" for body in bodies]


def _problem(question: Question) -> CodeProblem:
    if not isinstance(question, CodeProblem):
        raise TypeError(f"the code task grades programming problems, got a {type(question).__name__}; "
                        "is the target or held-out set of this run multiple-choice?")
    return question
