"""LaTeX clean-up: the canonical text of one answer string, which every comparison starts from.

Two answers that differ only in presentation (``$...$``, ``\\left(``, ``\\dfrac``, ``\\text{ m}``,
spacing, a trailing full stop) become the same string here, so the exact-string check decides most
items before any parser runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infuser.answers.boxes import match_braces, unbox

_SIZE_COMMANDS = re.compile(r"\\(?:left|right|bigg|Bigg|big|Big)[lr]?(?![a-zA-Z])\s*")
_SPACING = re.compile(r"\\[,;:! ]|~|\\q?quad(?![a-zA-Z])|\\(?:display|text|script)style(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|°|\\degree(?![a-zA-Z])")
_PERCENT = re.compile(r"\\%|%|\\percent(?![a-zA-Z])")
_WRAPPERS = ("\\text", "\\textbf", "\\textrm", "\\textit", "\\mathrm", "\\mathbf", "\\mathit", "\\mbox", "\\rm")
_RENAMES = (
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\(?:geqslant|geq|ge)(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\(?:leqslant|leq|le)(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])"), r"\\neq"),
    (re.compile(r"≤"), r"\\leq"),
    (re.compile(r"≥"), r"\\geq"),
    (re.compile(r"−"), "-"),
    (re.compile(r"∞"), r"\\infty"),
    (re.compile(r"\\(?:infin|inf)(?![a-zA-Z])"), r"\\infty"),
    (re.compile(r"\\(?:approx|simeq|sim)(?![a-zA-Z])|≈"), "="),
    (re.compile(r"\^\s*(?:\\prime(?![a-zA-Z])|\{\s*\\prime\s*\})"), "'"),
    (re.compile(r"∶"), ":"),
    (re.compile(r"，"), ","),
    (re.compile(r"[\u4e00-\u9fff]+"), ""),
)
_MEMBERSHIP = re.compile(r"^[^()\[\]{}]{0,40}?\\in(?![a-zA-Z])")
_COMMAND_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")
_WORD_SEPARATORS = re.compile(r"\s+(?:or|and)\s+|\s*;\s*")


def _unwrap_commands(text: str, commands: Sequence[str]) -> str:
    """Replace ``\\text{X}`` (and the other wrappers) by ``X``, braces matched."""
    for _ in range(32):
        pairs = match_braces(text)
        best: tuple[int, int, int] | None = None
        for cmd in commands:
            start = 0
            while True:
                i = text.find(cmd + "{", start)
                if i < 0:
                    break
                open_at = i + len(cmd)
                if open_at in pairs:
                    if best is None or i < best[0]:
                        best = (i, open_at, pairs[open_at])
                    break
                start = i + 1
        if best is None:
            return text
        i, open_at, close = best
        text = text[:i] + " " + text[open_at + 1 : close] + " " + text[close + 1 :]
    return text


def _squash(text: str) -> str:
    """Remove whitespace, except the one space that separates ``\\cmd`` from a following letter."""
    text = _COMMAND_SPACE.sub(r"\1 ", text.strip())
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            j = i - 1
            while j >= 0 and text[j].isalpha():
                j -= 1
            if j >= 0 and text[j] == "\\" and j < i - 1 and i + 1 < len(text) and text[i + 1].isalpha():
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Cleaned:
    """An answer after clean-up: canonical text, and whether a percent sign or a degree mark was
    removed."""

    text: str
    percent: bool
    degrees: bool = False


def _unit_forms(unit: str | None) -> list[str]:
    if not unit:
        return []
    base = clean_answer(unit, None).text
    forms = {base, base.replace("^", ""), base.rstrip("s")} - {""}
    return sorted(forms, key=len, reverse=True)


def clean_answer(text: str, unit: str | None) -> Cleaned:
    """Canonical form of one answer string used for every comparison.

    Removes math delimiters, ``\\boxed``, sizing and spacing commands, ``\\text``-like wrappers,
    degree marks, percent signs (remembered), the row's unit at the end, a trailing full stop, and
    insignificant spaces; reads ``\\approx``/``\\sim`` as ``=``, keeps what follows ``x \\in``, and
    drops Chinese characters (as the official judge does). Never raises.
    """
    s = text.strip().replace("$", "").replace("\\(", "").replace("\\)", "")
    s = unbox(s.replace("\\[", "").replace("\\]", "").strip().rstrip(".;。").strip())
    s = _SIZE_COMMANDS.sub("", s)
    s = _SPACING.sub(" ", s)
    for pattern, repl in _RENAMES:
        s = pattern.sub(repl, s)
    s = _unwrap_commands(s, _WRAPPERS)
    s = _MEMBERSHIP.sub("", s, count=1)
    degrees = bool(_DEGREES.search(s))
    s = _DEGREES.sub("", s)
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    s = _WORD_SEPARATORS.sub(",", s)
    s = _squash(s).rstrip(".;。").strip()
    for form in _unit_forms(unit):
        if s.endswith(form) and len(s) > len(form):
            s = s[: -len(form)].rstrip("\\ ,")
            break
    s = s.replace("^{}", "")
    return Cleaned(s, percent, degrees)


# -- structure: commas, equations, brackets ------------------------------------------------------
