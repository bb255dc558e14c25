"""Reading JSON Lines that anyone may have written: corpora, target sets, benchmark files.

``json.loads`` fails in more ways than :class:`json.JSONDecodeError`: deep nesting raises
``RecursionError`` and an integer longer than Python's digit limit a plain ``ValueError``. The
readers of every JSONL input go through :func:`load_json_line`, so each of them turns any line into
a value or into one error type they report with the file and line.
"""

from __future__ import annotations

import json


class JSONLineError(ValueError):
    """A line that is not one JSON value; ``str()`` is a short reason."""


def load_json_line(raw: bytes, first: bool = False) -> object:
    """The JSON value of one line (``first``: the file's first line, where a byte-order mark is allowed).

    Raises:
        UnicodeDecodeError: the line is not UTF-8.
        JSONLineError: the line is not JSON.
    """
    text = raw.decode("utf-8-sig" if first else "utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise JSONLineError(error.msg) from None
    except RecursionError:
        raise JSONLineError("nested too deeply") from None
    except ValueError as error:  # "Exceeds the limit (4300 digits) for integer string conversion ..."
        raise JSONLineError(str(error).split(":")[0]) from None


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``), which no
    tokenizer accepts, so text read from files is checked before it reaches one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
