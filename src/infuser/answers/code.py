"""The code a model's answer holds: how both the ``code`` task's grading and ``infuser eval``'s
HumanEval scoring take it from free text, so that training and evaluation read answers alike.

Extraction (:func:`extract_code`), the first rule that applies:

1. ``python_block``: the first fenced block tagged ``python``, ``py`` or ``python3`` (any case);
2. ``block``: else the first fenced block, whatever its tag;
3. ``plain``: else the whole completion.

A fence that is never closed runs to the end of the completion (a completion cut by its token
budget). A completion with no code at all (empty, or only blank) is a miss. Nothing here runs
the code: it is handed to an executor (:mod:`infuser.sandbox`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
