"""The final answer of an OlympiadBench-style solution.

Every function takes any ``str`` and returns an :class:`~infuser.answers.extraction.Extraction`;
none raises. Inputs are cut to their last ``max_chars`` characters, braces are matched in one
linear pass, and the regular expressions are anchored or bounded, so the work is linear in the
(bounded) input. The scorer still runs extraction inside :mod:`infuser.eval.limits`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from infuser.answers.boxes import BoxSpan, find_boxes, last_unclosed_box, unbox
from infuser.answers.extraction import MAX_OUTPUT_CHARS, Extraction, bound_text, line_end

MAX_ANSWER_CHARS = 2_000
"""Longest extracted answer we keep; longer spans are not answers but runaway text."""

_FINAL_PHRASE = "final answer is"
_ANSWER_PHRASES = (
    re.compile(r"(?i)\banswer\s{0,3}(?:is|would be|should be|will be)\b\s{0,3}:?"),
    re.compile(r"(?i)\banswer\s{0,3}[:：]"),
)
_OPENERS = ("$$", "$", "\\(", "\\[")
_CLOSERS = ("$$", "$", "\\)", "\\]")


def clean_answer_text(answer: str) -> str:
    """Trim math delimiters, whitespace and trailing punctuation around an extracted answer.

    Plain string operations (no regular expression), so it is linear on any input.
    """
    text = answer.strip()
    for _ in range(4):
        before = text
        for opener in _OPENERS:
            if text.startswith(opener):
                text = text[len(opener) :].lstrip()
                break
        for closer in _CLOSERS:
            if text.endswith(closer):
                text = text[: -len(closer)].rstrip()
                break
        text = text.rstrip(".;。").strip()
        if text.startswith(":"):
            text = text[1:].strip()
        if text == before:
            break
    return unbox(text)


def _boxes_on_line(spans: Sequence[BoxSpan], line_start: int, line_end: int) -> list[BoxSpan]:
    return [s for s in spans if line_start <= s.start < line_end]


def _join_boxes(spans: Sequence[BoxSpan]) -> str:
    return ", ".join(clean_answer_text(s.content) for s in spans if s.content.strip())


def _accept(answer: str) -> bool:
    return bool(answer) and len(answer) <= MAX_ANSWER_CHARS


def inline_math(line: str) -> list[str]:
    """The ``$...$`` pieces of one line, in order, as the official judge pairs its dollars: each
    ``$`` opens a piece that the next one closes, and a ``$`` left unpaired opens nothing.

    A ``$$...$$`` display is one piece (the official pattern reads it as two empty ones).
    Plain ``str.find`` steps, so linear in the line.
    """
    pieces: list[str] = []
    i = line.find("$")
    while i >= 0:
        delimiter = "$$" if line.startswith("$$", i) else "$"
        close = line.find(delimiter, i + len(delimiter))
        if close < 0:
            break
        pieces.append(line[i + len(delimiter) : close])
        i = line.find("$", close + len(delimiter))
    return pieces


def _last_line_math(text: str) -> str:
    """The official fallback when an output has neither an answer phrase nor a box: every inline
    formula on its last line, joined with ``", "`` (several formulas are several answers)."""
    stripped = text.rstrip()
    last_line = stripped[stripped.rfind("\n") + 1 :]
    return ", ".join(clean_answer_text(piece) for piece in inline_math(last_line) if piece.strip())


def extract_olympiad_answer(output: str, max_chars: int = MAX_OUTPUT_CHARS) -> Extraction:
    """The final answer of an OlympiadBench-style solution.

    Cascade (first hit wins):

    1. the last line containing ``final answer is`` (the official format, ``So the final answer
       is \\boxed{...}``): every box that starts on that line, joined with ``", "`` (several
       boxes are several answers); without boxes, the rest of that line;
    2. boxes anywhere: all boxes that start on the last line holding a box (so ``\\boxed{1}`` in a
       scratch line followed by ``\\boxed{2}`` later gives ``2``);
    3. the last ``answer is X`` / ``Answer: X``: the rest of that line;
    4. the official fallback: every ``$...$`` on the output's last line, joined with ``", "``.

    A box whose brace never closes is an answer cut off mid-way: when the line a rule reads holds
    one (or, for rule 2, when it comes after the last closed box) the output is a miss with method
    ``unclosed_box``; its raw text is never read as the answer.

    Never raises; returns ``Extraction(None, "none")`` when nothing is found.
    """
    if not isinstance(output, str):
        return Extraction(None, "none")
    text, truncated = bound_text(output, max_chars) if output else ("", False)
    spans = find_boxes(text)
    unclosed = last_unclosed_box(text)
    cut_off = Extraction(None, "unclosed_box", truncated)

    final = text.lower().rfind(_FINAL_PHRASE)
    if final >= 0:
        end = line_end(text, final)
        if unclosed is not None and final <= unclosed < end:
            return cut_off
        on_line = _boxes_on_line(spans, final, end)
        if on_line:
            answer = _join_boxes(on_line)
            if _accept(answer):
                return Extraction(answer, "final_answer_line:boxed", truncated)
        rest = clean_answer_text(text[final + len(_FINAL_PHRASE) : end])
        if _accept(rest):
            return Extraction(rest, "final_answer_line:text", truncated)

    if unclosed is not None and (not spans or unclosed > spans[-1].start):
        return cut_off
    if spans:
        last = spans[-1]
        line_start = text.rfind("\n", 0, last.start) + 1
        end = line_end(text, line_start)
        on_line = _boxes_on_line(spans, line_start, end) or [last]
        answer = _join_boxes(on_line)
        if _accept(answer):
            return Extraction(answer, "boxed:last_line", truncated)

    best: tuple[int, int] | None = None
    for pattern in _ANSWER_PHRASES:
        for m in pattern.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.end())
    if best is not None:
        rest = clean_answer_text(text[best[1] : line_end(text, best[1])])
        if _accept(rest):
            return Extraction(rest, "answer_is:text", truncated)

    inline = _last_line_math(text)
    if _accept(inline):
        return Extraction(inline, "last_line:inline_math", truncated)
    return Extraction(None, "none", truncated)
