"""The structure of a cleaned answer: top-level commas, equations, bracketed groups, unions.

Plain character scans (no regular expressions over nested input), linear in the answer's length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPEN = "([{"
_CLOSE = ")]}"


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` characters outside any bracket (``()[]{}``, mixed ends allowed: ``(0,4]``)."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            depth += 1 if text[i + 1] == "{" else -1
            i += 2
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def split_equation(text: str) -> list[str]:
    """Split at top-level ``=`` signs (not ``<=``, ``>=``, ``!=``, ``:=``, ``==``)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
        elif ch == "=" and depth == 0:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if (before and before in "<>!:=") or after == "=":
                continue
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Group:
    """A bracketed, comma-separated group: a tuple ``(a,b,c)``, an interval ``(a,b]`` or a set
    ``\\{a,b\\}``."""

    open: str
    close: str
    items: tuple[str, ...]


def outer_group(text: str) -> Group | None:
    """``text`` as one bracketed group whose brackets enclose it entirely, with >= 1 comma (or a
    set), else ``None``. ``(n-1)(n+1)`` and ``(n-1)`` are not groups."""
    if text.startswith("\\{"):
        open_token, body_start = "\\{", 2
    elif text and text[0] in "([":
        open_token, body_start = text[0], 1
    else:
        return None
    depth = 0
    i = 0
    end = -1
    while i < len(text):
        if text.startswith("\\{", i):
            depth += 1
            i += 2
            continue
        if text.startswith("\\}", i):
            depth -= 1
            if depth == 0:
                end = i
                break
            i += 2
            continue
        ch = text[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                end = i
                break
        i += 1
    if end < 0:
        return None
    close_token = "\\}" if text.startswith("\\}", end) else text[end]
    if end + len(close_token) != len(text):
        return None
    body = text[body_start:end]
    items = split_top_level(body)
    if open_token == "\\{":
        return Group("{", "}", tuple(items))
    if close_token not in ")]" or len(items) < 2:
        return None
    return Group(open_token, close_token, tuple(items))


def union_pieces(text: str) -> list[str] | None:
    pieces = [p for p in re.split(r"\\cup(?![a-zA-Z])", text)]
    if len(pieces) < 2:
        return None
    return [p.strip() for p in pieces]




def nesting_depth(text: str) -> int:
    """How deeply brackets nest in ``text`` (unbalanced closers are ignored)."""
    depth = deepest = 0
    for ch in text:
        if ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
    return deepest
