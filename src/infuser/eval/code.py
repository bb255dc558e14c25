"""Scoring code completions (HumanEval, HumanEval+): the code taken from a completion, the program it
makes with the problem's prompt, and that program run against the problem's test in the sandbox.

Extraction (:func:`extract_code`), the first rule that applies:

1. ``python_block``: the first fenced block tagged ``python``, ``py`` or ``python3`` (any case);
2. ``block``: else the first fenced block, whatever its tag;
3. ``plain``: else the whole completion.

A fence that is never closed runs to the end of the completion (a completion cut by its token
budget). A completion with no code at all (empty, or only blank) is a miss, scored wrong without
running anything (reason ``no_code``).

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

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infuser.eval.data import CodeRow
from infuser.eval.score import ItemScore
from infuser.sandbox.base import Executor, TestCase

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""Where HumanEval's protocol stops sampling a continuation (the Codex paper)."""

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}


@dataclass(frozen=True)
class CodeExtraction:
    """The code of one completion and how it was found.

    Attributes:
        code: the extracted code ("" for a miss).
        method: ``python_block``, ``block``, ``plain`` or ``none``.
    """

    code: str
    method: str

    @property
    def missed(self) -> bool:
        return not self.code.strip()


def extract_code(completion: str) -> CodeExtraction:
    """The code of ``completion`` by the rules in the module docstring."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(completion)]
    python = next((body for tag, body in blocks if tag in _PYTHON_TAGS), None)
    if python is not None:
        found = CodeExtraction(python, "python_block")
    elif blocks:
        found = CodeExtraction(blocks[0][1], "block")
    else:
        found = CodeExtraction(completion, "plain")
    return found if not found.missed else CodeExtraction("", "none")


def defines(code: str, entry_point: str) -> bool:
    """Whether ``code`` defines ``entry_point`` at the top level (it is a full function)."""
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", code, re.MULTILINE) is not None


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
