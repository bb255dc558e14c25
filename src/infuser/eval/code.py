"""Scoring code completions (HumanEval, HumanEval+): the code taken from a completion, the program it
makes with the problem's prompt, and that program run against the problem's test in the sandbox.

Extraction: :func:`infuser.answers.code.extract_code` (the first fenced ``python`` block, else the
first fenced block, else the whole completion; the training loop's ``code`` task reads answers
the same way). A completion with no code at all (empty, or only blank) is a miss, scored wrong
without running anything (reason ``no_code``).

Assembly with the prompt (:func:`assemble`):

* **a full function**: the code defines the entry point itself (a line ``def <entry_point>(`` at
  column 0, ``async def`` too). The program is the prompt, a newline, then the code: the prompt
  brings its imports and helper functions (``make_palindrome`` needs ``is_palindrome``), its stub
  (a signature whose docstring is its whole body, valid Python) is defined first, and the code's
  definition replaces it;
* **a body continuing the prompt**: anything else. The program is the prompt followed by the
  code, exactly as HumanEval's own harness joins them; a ``plain`` continuation is first cut at
  the first of HumanEval's stop sequences (``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``,
  ``\\nprint``, as in the Codex paper), where sampling would have stopped, so that a base model
  rambling on after the body is scored as the protocol scores it.

Scoring: :meth:`~infuser.sandbox.base.Executor.run_tests` runs the program (as the module
``candidate``: its ``if __name__ == "__main__":`` block does not run), then the problem's test,
then ``check(<entry_point>)``; the completion passes when that raises nothing, within the
executor's limits. Nothing of it ever runs in this process.
"""

from __future__ import annotations

from collections.abc import Sequence

from infuser.answers.code import CodeExtraction, defines, extract_code
from infuser.eval.data import CodeRow
from infuser.eval.score import ItemScore
from infuser.sandbox.base import Executor, TestCase

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""Where HumanEval's protocol stops sampling a continuation (the Codex paper)."""

def cut_at_stop(code: str) -> str:
    """``code`` up to the first of :data:`STOP_SEQUENCES`."""
    cut = min((index for index in (code.find(stop) for stop in STOP_SEQUENCES) if index >= 0), default=len(code))
    return code[:cut]


def assemble(row: CodeRow, extraction: CodeExtraction) -> str:
    """The program that runs: the prompt and the code, joined by the rules in the module docstring."""
    code = extraction.code
    if defines(code, row.entry_point):
        return f"{row.prompt.rstrip()}\n\n{code}"
    if extraction.method == "plain":
        code = cut_at_stop(code)
    return row.prompt + code


def score_code(executor: Executor, outputs: Sequence[str], rows: Sequence[CodeRow]) -> list[ItemScore]:
    """Score each completion against its row's test (same order, same length), through the
    executor's pool; the reason is the run's status, the detail its first failure."""
    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs but {len(rows)} rows")
    extractions = [extract_code(str(output)) for output in outputs]
    runnable = [i for i, extraction in enumerate(extractions) if not extraction.missed]
    runs = executor.run_tests_many(
        [TestCase(assemble(rows[i], extractions[i]), (rows[i].test,), rows[i].entry_point) for i in runnable]
    )
    scores = [ItemScore(None, False, True, "no_code", "none", detail="the completion holds no code")
              for _ in extractions]
    for i, run in zip(runnable, runs):
        scores[i] = ItemScore(extractions[i].code, run.all_passed, False, run.status, extractions[i].method,
                              detail=run.reason)
    return scores
