"""The option letter a multiple-choice answer picks (SuperGPQA, the toy world's Solver).

The Solver's 0/1 training reward and every reported multiple-choice accuracy use
:func:`extract_choice`, so a letter is read the same way in training and in evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from infuser.answers.boxes import find_boxed, unbox
from infuser.answers.extraction import MAX_OUTPUT_CHARS, Extraction, bound_text, line_end

LETTERS = "ABCDEFGHIJ"

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
                candidates.append(text[ends[-1] : line_end(text, ends[-1])])
        boxes = find_boxed(text)
        if boxes:
            candidates.append(boxes[-1])
        candidates.append(last_line)
        for candidate in candidates:
            letter = normalised.get(_normalise_option(unbox(candidate)))
            if letter:
                return Extraction(letter, "option_text", truncated)
    return Extraction(None, "none", truncated)
