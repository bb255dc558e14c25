"""``\\boxed{...}`` spans in model output: braces matched in one linear pass, escaped braces ignored."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BOXES = 256
"""At most this many ``\\boxed`` spans are examined in one output."""


def match_braces(text: str) -> dict[int, int]:
    """Map the index of every balanced ``{`` to the index of its ``}``.

    Escaped braces (``\\{``, ``\\}``) are literal characters and are not counted. Unbalanced
    braces are simply left out of the map. One pass, linear time.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


_BOX_COMMANDS = ("\\boxed", "\\fbox")


@dataclass(frozen=True)
class BoxSpan:
    """One ``\\boxed{...}``: its content and where the command starts and ends in the text."""

    content: str
    start: int
    end: int


def find_boxes(text: str, limit: int = MAX_BOXES) -> list[BoxSpan]:
    """All outermost ``\\boxed{...}`` / ``\\fbox{...}`` spans, braces matched, in text order.

    A box whose braces never close is skipped; ``\\boxed 5`` (no braces) yields the next token.
    Boxes nested inside an earlier box are part of that box's content, not separate spans.
    """
    pairs = match_braces(text)
    spans: list[BoxSpan] = []
    covered_until = -1
    pos = 0
    # The next occurrence of each command, searched again only once passed: one scan of the text
    # per command in total (searching afresh each round is quadratic on "\boxed{\fbox{..." spam).
    next_hit = {cmd: text.find(cmd) for cmd in _BOX_COMMANDS}
    while len(spans) < limit:
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
    return spans


_BARE_BOX_TOKEN = re.compile(r"[^\s$\\{}]{1,64}")


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
