"""``\\boxed{...}`` spans in model output: braces matched in one linear pass, escaped braces ignored."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

MAX_BOXES = 256
"""At most this many ``\\boxed`` spans are kept from one output: the last ones, where answers are."""


def _scan_braces(text: str) -> tuple[dict[int, int], int]:
    """The index of every balanced ``{`` mapped to its ``}``, and how many braces are unmatched.

    Escaped braces (``\\{``, ``\\}``) are literal characters and are not counted. One pass,
    linear time.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    stray = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                pairs[stack.pop()] = i
            else:
                stray += 1
        i += 1
    return pairs, stray + len(stack)


def match_braces(text: str) -> dict[int, int]:
    """Map the index of every balanced ``{`` to the index of its ``}``; unbalanced braces are
    left out of the map."""
    return _scan_braces(text)[0]


def balanced_braces(text: str) -> bool:
    """Whether every unescaped ``{`` in ``text`` is closed, in order, and no ``}`` closes nothing.

    An answer cut off mid-way (``\\boxed{5``) or with a stray closer (``5}``) is not an answer:
    wrapped into a box by a parser, the wrapper's own brace would close it and hide the damage.
    """
    return _scan_braces(text)[1] == 0


_BOX_COMMANDS = ("\\boxed", "\\fbox")


@dataclass(frozen=True)
class BoxSpan:
    """One ``\\boxed{...}``: its content and where the command starts and ends in the text."""

    content: str
    start: int
    end: int


def find_boxes(text: str, limit: int = MAX_BOXES) -> list[BoxSpan]:
    """The last ``limit`` outermost ``\\boxed{...}`` / ``\\fbox{...}`` spans, braces matched, in
    text order.

    A box whose braces never close is skipped (see :func:`last_unclosed_box`); ``\\boxed 5`` (no
    braces) yields the next token. Boxes nested inside an earlier box are part of that box's
    content, not separate spans. The last boxes are kept because the answer comes last: an output
    with hundreds of scratch boxes still has its final one read.
    """
    pairs = match_braces(text)
    spans: deque[BoxSpan] = deque(maxlen=limit)
    covered_until = -1
    pos = 0
    # The next occurrence of each command, searched again only once passed: one scan of the text
    # per command in total (searching afresh each round is quadratic on "\boxed{\fbox{..." spam).
    next_hit = {cmd: text.find(cmd) for cmd in _BOX_COMMANDS}
    while True:
        for cmd, found in next_hit.items():
            if 0 <= found < pos:
                next_hit[cmd] = text.find(cmd, pos)
        hits = [(i, cmd) for cmd, i in next_hit.items() if i >= 0]
        if not hits:
            break
        start, cmd = min(hits)
        after = start + len(cmd)
        pos = after
        if after < len(text) and (text[after].isalpha()):
            continue  # \boxedfoo is another command
        if start < covered_until:
            continue
        j = after
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            close = pairs.get(j)
            if close is None:
                continue
            spans.append(BoxSpan(text[j + 1 : close], start, close + 1))
            covered_until = close + 1
            pos = close + 1
        else:
            m = _BARE_BOX_TOKEN.match(text, j)
            if m and m.group(0):
                spans.append(BoxSpan(m.group(0), start, m.end()))
                pos = m.end()
    return list(spans)


_BARE_BOX_TOKEN = re.compile(r"[^\s$\\{}]{1,64}")
_OPENING_BOX = re.compile(r"\\(?:boxed|fbox)[ \t]*\{")


def last_unclosed_box(text: str) -> int | None:
    """Where the last ``\\boxed{`` whose brace never closes starts, or ``None``.

    Such a box is an answer cut off mid-way (the generation ran out of tokens): its text is not
    the answer, and the raw rest of the line must not be read as one either.
    """
    pairs = match_braces(text)
    last = None
    for m in _OPENING_BOX.finditer(text):
        if m.end() - 1 not in pairs:
            last = m.start()
    return last


def find_boxed(text: str, limit: int = MAX_BOXES) -> list[str]:
    """Contents of every outermost ``\\boxed{}`` in ``text`` (see :func:`find_boxes`)."""
    return [span.content for span in find_boxes(text, limit)]


def unbox(answer: str) -> str:
    """Strip ``\\boxed{...}`` wrappers that enclose the whole answer (``\\boxed{\\boxed{3}}``)."""
    for _ in range(8):
        stripped = answer.strip()
        spans = find_boxes(stripped, limit=2)
        if len(spans) == 1 and spans[0].start == 0 and spans[0].end == len(stripped):
            answer = spans[0].content
        else:
            return stripped
    return answer.strip()
