"""Answer extraction from model output: OlympiadBench final answers and SuperGPQA letters.

Model output is untrusted. Every function here takes any ``str`` and returns an
:class:`Extraction`; none of them raises. Inputs are cut to their last ``max_chars`` characters
(answers come last), braces are matched with one linear pass, and the regular expressions are
anchored or bounded, with no nested quantifiers, so the work is linear in the (bounded) input.
The scorer still runs them inside :mod:`infuser.eval.limits` as a second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infuser.eval.limits import bound_text

MAX_OUTPUT_CHARS = 32_768
"""Default bound on the judged part of an output (its tail)."""

MAX_ANSWER_CHARS = 2_000
"""Longest extracted answer we keep; longer spans are not answers but runaway text."""

MAX_BOXES = 256
"""At most this many ``\\boxed`` spans are examined in one output."""

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Extraction:
    """An extracted answer and how it was found.

    Attributes:
        answer: the answer text (OlympiadBench) or option letter (SuperGPQA); ``None`` when the
            output has no recognisable answer (a *miss*).
        method: which rule found it (``"final_answer_line:boxed"``, ``"answer_is@last_line"``...)
            or ``"none"``. Recorded per item so that extraction failures can be audited.
        truncated: the output was longer than the bound and only its tail was read.
    """

    answer: str | None
    method: str
    truncated: bool = False


# -- braces and boxes ------------------------------------------------------------------------


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


# -- OlympiadBench ---------------------------------------------------------------------------

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


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _boxes_on_line(spans: Sequence[BoxSpan], line_start: int, line_end: int) -> list[BoxSpan]:
    return [s for s in spans if line_start <= s.start < line_end]


def _join_boxes(spans: Sequence[BoxSpan]) -> str:
    return ", ".join(clean_answer_text(s.content) for s in spans if s.content.strip())


def _accept(answer: str) -> bool:
    return bool(answer) and len(answer) <= MAX_ANSWER_CHARS


def extract_olympiad_answer(output: str, max_chars: int = MAX_OUTPUT_CHARS) -> Extraction:
    """The final answer of an OlympiadBench-style solution.

    Cascade (first hit wins):

    1. the last line containing ``final answer is`` (the official format, ``So the final answer
       is \\boxed{...}``): every box that starts on that line, joined with ``", "`` (several
       boxes are several answers); without boxes, the rest of that line;
    2. boxes anywhere: all boxes that start on the last line holding a box (so ``\\boxed{1}`` in a
       scratch line followed by ``\\boxed{2}`` later gives ``2``);
    3. the last ``answer is X`` / ``Answer: X``: the rest of that line.

    Never raises; returns ``Extraction(None, "none")`` when nothing is found.
    """
    if not isinstance(output, str):
        return Extraction(None, "none")
    text, truncated = bound_text(output, max_chars) if output else ("", False)
    spans = find_boxes(text)
    lowered = text.lower()

    final = lowered.rfind(_FINAL_PHRASE)
    if final >= 0:
        line_end = _line_end(text, final)
        on_line = _boxes_on_line(spans, final, line_end)
        if on_line:
            answer = _join_boxes(on_line)
            if _accept(answer):
                return Extraction(answer, "final_answer_line:boxed", truncated)
        rest = clean_answer_text(text[final + len(_FINAL_PHRASE) : line_end])
        if _accept(rest):
            return Extraction(rest, "final_answer_line:text", truncated)

    if spans:
        last = spans[-1]
        line_start = text.rfind("\n", 0, last.start) + 1
        line_end = _line_end(text, line_start)
        on_line = _boxes_on_line(spans, line_start, line_end) or [last]
        answer = _join_boxes(on_line)
        if _accept(answer):
            return Extraction(answer, "boxed:last_line", truncated)

    best: tuple[int, int] | None = None
    for pattern in _ANSWER_PHRASES:
        for m in pattern.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.end())
    if best is not None:
        rest = clean_answer_text(text[best[1] : _line_end(text, best[1])])
        if _accept(rest):
            return Extraction(rest, "answer_is:text", truncated)
    return Extraction(None, "none", truncated)


# -- SuperGPQA letters ------------------------------------------------------------------------

_LETTER_PHRASES = (
    ("answer_is", re.compile(
        r"(?i)\b(?:(?:correct|final|best|right)\s{1,3})?(?:answer|option|choice)\s{0,3}"
        r"(?:is|would be|should be|will be|must be)\b\s{0,3}[:：]?"
    )),
    ("answer_colon", re.compile(r"(?i)\banswer\s{0,3}[:：]")),
)
_WRAPPER_PREFIXES = (
    "\\boxed{", "\\fbox{", "\\text{", "\\textbf{", "\\mathbf{", "\\mathrm{", "\\textrm{", "\\mathit{",
    "\\(", "\\[", "option", "choice", "letter", "(", "[", "{", "*", "_", "$", '"', "'", "`", ":",
    "：", "**",
)
_BARE_LINE = re.compile(r"\W{0,12}([A-J])\W{0,12}")
_BARE_LINE_WITH_TEXT = re.compile(r"\W{0,12}([A-J])\s{0,2}[).:]\s")


def _leading_letter(span: str, letters: str) -> str | None:
    """The option letter at the start of ``span`` once wrappers are peeled off, if any."""
    text = span[:120].lstrip()
    for _ in range(12):
        lowered = text.lower()
        for prefix in _WRAPPER_PREFIXES:
            if lowered.startswith(prefix):
                text = text[len(prefix) :].lstrip()
                break
        else:
            break
    if not text or text[0] not in letters:
        return None
    if len(text) > 1 and (text[1].isalnum() or text[1] in "'’"):
        return None  # a word such as "Apple" or "I'm"
    if text[0] == "I" and len(text) > 2 and text[1] == " " and text[2].islower():
        return None  # the pronoun: "the answer is, I think, C"
    return text[0]


def _phrase_letter(scope: str, pattern: re.Pattern[str], letters: str) -> str | None:
    found = None
    for m in pattern.finditer(scope):
        letter = _leading_letter(scope[m.end() : m.end() + 120], letters)
        if letter:
            found = letter
    return found


def _boxed_letter(scope: str, letters: str) -> str | None:
    for content in reversed(find_boxed(scope)):
        letter = _leading_letter(content, letters)
        if letter:
            return letter
    return None


def _bare_letter(line: str, letters: str, allow_text: bool) -> str | None:
    line = line.strip()
    if len(line) > 200:
        return None
    m = _BARE_LINE.fullmatch(line)
    if m is None and allow_text:
        m = _BARE_LINE_WITH_TEXT.match(line)
    if m and m.group(1) in letters:
        return m.group(1)
    return None


def _normalise_option(text: str) -> str:
    text = text.replace("\\text{", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    text = re.sub(r"[\s{}]+", " ", text.lower())
    return text.strip(" .;:*")


def extract_choice(output: str, options: Sequence[str], max_chars: int = MAX_OUTPUT_CHARS) -> Extraction:
    """The option letter chosen by a multiple-choice answer.

    Cascade, run on the last non-empty line first and then on the whole text (the last match in
    the text wins): ``the answer is X`` (also ``correct option is``, ``would be``...),
    ``Answer: X``, ``\\boxed{X}``, and a bare letter (``C``, ``(C)``, ``**C**``, ``C) text`` on the
    last line; a line holding only the letter elsewhere). Wrappers such as ``\\boxed{}``,
    ``\\text{}``, ``**``, parentheses and ``option`` are peeled off. Only letters of existing
    options count. Last resort: the answer phrase, last box or last line equals exactly one
    option's text.

    Never raises; ``Extraction(None, "none")`` is a miss.
    """
    if not isinstance(output, str):
        return Extraction(None, "none")
    letters = LETTERS[: max(0, min(len(options), len(LETTERS)))]
    text, truncated = bound_text(output, max_chars) if output else ("", False)
    lines = [line for line in text.splitlines() if line.strip()]
    last_line = lines[-1] if lines else ""

    for scope_name, scope in (("last_line", last_line), ("text", text)):
        for name, pattern in _LETTER_PHRASES:
            letter = _phrase_letter(scope, pattern, letters)
            if letter:
                return Extraction(letter, f"{name}@{scope_name}", truncated)
        letter = _boxed_letter(scope, letters)
        if letter:
            return Extraction(letter, f"boxed@{scope_name}", truncated)
        if scope_name == "last_line":
            letter = _bare_letter(last_line, letters, allow_text=True)
        else:
            letter = next(
                (hit for hit in (_bare_letter(line, letters, False) for line in reversed(lines)) if hit), None
            )
        if letter:
            return Extraction(letter, f"bare_letter@{scope_name}", truncated)

    # Fall back to an option's text.
    normalised = {_normalise_option(o): LETTERS[i] for i, o in enumerate(options[: len(letters)])}
    if len(normalised) == len(letters):  # options are distinct after normalisation
        candidates: list[str] = []
        for _, pattern in _LETTER_PHRASES:
            ends = [m.end() for m in pattern.finditer(text)]
            if ends:
                candidates.append(text[ends[-1] : _line_end(text, ends[-1])])
        boxes = find_boxed(text)
        if boxes:
            candidates.append(boxes[-1])
        candidates.append(last_line)
        for candidate in candidates:
            letter = normalised.get(_normalise_option(unbox(candidate)))
            if letter:
                return Extraction(letter, "option_text", truncated)
    return Extraction(None, "none", truncated)
