"""The option letter a multiple-choice answer picks (SuperGPQA, the toy world's Solver).

The Solver's 0/1 training reward and every reported multiple-choice accuracy use
:func:`extract_choice`, so a letter is read the same way in training and in evaluation.

It reads an output the way a careful human grader does: find every place where the model states
a choice, and take the **last** one, since a model that changes its mind ends with its final
choice. Statements are found by these rules, over the output's bounded tail (its last
``max_chars`` characters), case-insensitively:

==================  =============================================================================
rule                a statement of choice
==================  =============================================================================
``answer_phrase``   ``the answer is C``, ``Answer: c``, ``**Final Answer:** C``, ``The correct
                    option is (E)``, ``Answer: I think it's B``, ``the answer is 0.8 m/s`` (an
                    option's text)
``boxed``           ``\\boxed{C}``, ``\\boxed{\\text{C}}``, ``\\boxed{C) 0.8 m/s}``, ``\\boxed{0.8 m/s}``
``choose``          ``I'll go with C``, ``I choose option B``, ``let's pick D``
``is_correct``      ``option E is correct``, ``(E) is the correct answer.``, ``E is right``
``refers_to``       ``..., which corresponds to option H``, ``so option D``, ``i.e. option A``
``it_is``           ``It is D.``, ``it's B`` (after ``The answer is not A.``)
``closest``         ``the closest is G``, ``the closest option is G``
``last_line``       the output's last line is a choice: ``C``, ``(C)``, ``**C**``, ``Option C: 0.8
                    m/s``, ``C) 0.8 m/s``, or exactly one option's text
==================  =============================================================================

What a statement says is read after wrappers (``**``, ``$``, ``\\text{}``, ``\\boxed{}``,
parentheses, ``option``, ``choice``, ``letter``) and hedging words (``I think``, ``it's``,
``probably``, ``either``) are peeled off. A letter counts only as a letter: ``Apple``, ``I'm`` and
the pronoun in ``I think`` are words; a lower-case letter must stand alone (``the answer is c.``,
not ``the answer is a bit...``), and in the weaker rules (``choose`` to ``closest``) an upper-case
one too (``It is A good idea`` states nothing). Three kinds of statement choose nothing, and
when one of them is the last statement the output is a miss:

* a **hedge**, two different letters in one statement (``A or B``, ``Answer: A, B``,
  ``\\boxed{A, C}``, ``(A) and (B)``, ``\\boxed{A} or \\boxed{C}``, a last line listing
  letters): no single answer (method ``hedge``);
* a letter the question has no option for (``Answer: E`` with four options; method
  ``no_such_option``): letters outside the option count are never extracted;
* a negation (``the answer is not A``) is no statement at all.

Only when no statement is found: a line elsewhere holding nothing but a letter (``bare_letter``),
the last one. Every function is linear in its bounded input and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infuser.answers.boxes import find_boxes, unbox
from infuser.answers.extraction import MAX_OUTPUT_CHARS, Extraction, bound_text, line_end

LETTERS = "ABCDEFGHIJ"

_OBJECT_CHARS = 160
"""How far after a phrase its object is read (wrappers, a hedge such as ``A, B or C``)."""

_STATEMENTS = (
    # (rule, weak, phrase): a weak rule's letter must stand alone and be an option's
    ("answer_phrase", False, re.compile(
        r"(?i)\b(?:(?:correct|final|best|right|most\s+likely|most\s+appropriate)\s+)?(?:answer|option|choice)"
        r"(?:\s+to\s+(?:this|the)\s+(?:question|problem))?"
        r"(?:\s+(?:is|was|would\s+be|should\s+be|will\s+be|must\s+be)\b|\s{0,3}[:：=]|\s{1,3}[-–—]\s)"
    )),
    ("choose", True, re.compile(
        r"(?i)\b(?:(?:i|we)(?:'ll|’ll|\s+will|\s+would|'d|’d)?\s+|let's\s+|let’s\s+)?"
        r"(?:go(?:ing)?\s+with|choose|pick|select|opt\s+for)\b"
    )),
    ("refers_to", True, re.compile(
        r"(?i)\b(?:corresponds?\s+to|corresponding\s+to|matches|matching|which\s+is|that\s+is|i\.e\.|namely"
        r"|so|thus|therefore|hence)\s{0,3}[,:]?\s{0,3}(?:the\s+)?(?:option|choice)\s+"
    )),
    ("it_is", True, re.compile(r"(?i)\b(?:it|this|that)(?:'s|’s|\s+is|\s+must\s+be|\s+should\s+be|\s+would\s+be)\s+")),
    ("closest", True, re.compile(
        r"(?i)\b(?:closest|nearest|best\s+match(?:ing)?)(?:\s+(?:option|answer|choice|value|match|one))?"
        r"\s{0,3}(?:is|would\s+be|:)"
    )),
)
_IS_CORRECT = re.compile(
    r"(?im)(?:\b(option|choice|answer)\s{0,3})?[(\[]?\b([a-j])\b[)\]]?\s{0,3}(?:\*\*)?\s{0,3}(?:is|would\s+be)\s+"
    r"(?:the\s+)?(?:correct|right|best)(?:\s+(?:answer|option|choice|one))?\s{0,3}(?:\*\*)?\s{0,3}(?:[.!;,]|$)"
)
_LEAD = re.compile(
    r"(?i)(?:\s+|\*+|_+|`+|[\"'“”‘’:：=$]|-+(?!\d)|\\[(\[]|[(\[{]"
    r"|\\(?:boxed|fbox|text|textbf|textrm|texttt|mathbf|mathrm|mathit|mathsf|mbox)\s*\{"
    r"|(?:the\s+)?(?:(?:correct|final|right|best)\s+)?(?:option|choice|letter|answer)\b"
    r"|i\s+(?:think|believe|guess|would\s+say|'d\s+say|’d\s+say)\b"
    r"|(?:it|this|that)(?:'s|’s|\s+is|\s+must\s+be|\s+should\s+be|\s+would\s+be)(?![a-z])"
    r"|(?:probably|likely|most\s+likely|definitely|clearly|either|therefore|thus|so|hence|then|simply)\b)"
)
_CLOSERS = re.compile(r"(?:[)\]}*_$`'\"”’]|\\[)\]])*")
_LETTER = re.compile(r"([A-Za-z])(?![A-Za-z0-9'’])")
_STANDS_ALONE = re.compile(
    r"(?:$|[\n.,;:!?]|\s+(?:$|\n|[-–—(]|(?:because|since|as|which|with|is|was|and|or|but|for)\b))"
)
_CONNECTOR = r"(?:,|/|&|\bor\b|\band\b|\\text\{\s*or\s*\}|\\lor\b)"
_HEDGE_JOIN = re.compile(rf"\s*{_CONNECTOR}\s*")
_BETWEEN_LISTED_BOXES = re.compile(rf"[\s$]*{_CONNECTOR}?[\s$]*")
_NEGATION = re.compile(r"(?i)(?:not|n't|n’t)\b")
# The separator between two listed letters is either punctuation alone or punctuation around
# "or"/"and", never an optional word between two optional runs: that form split a run of
# punctuation in many ways per repetition and backtracked exponentially (":::::A" * 30: 4 s).
_LETTER_LIST_LINE = re.compile(
    r"(?i)[\W_]{0,12}(?:(?:options?|choices?|answers?)\s{1,3})?[a-j]\b"
    r"(?:(?:[\W_]{1,12}|[\W_]{0,6}(?:or|and)[\W_]{0,6})\b[a-j]\b){1,9}[\W_]{0,12}"
)
_BARE_LETTER_LINE = re.compile(r"(?i)\W{0,12}(?:(?:option|choice|answer)\s{1,3})?([a-j])\W{0,12}")
_OPTION_LINE = re.compile(r"(?i)\W{0,12}(?:(option|choice)\s{1,3})?([a-j])\s{0,2}[).:\-–—]\s")


@dataclass(frozen=True)
class _Read:
    """What a statement says: a letter (``A``..``Z``), a hedge, a negation, or nothing."""

    letter: str | None = None
    hedge: bool = False
    negated: bool = False


_NOTHING = _Read()


def _peel(text: str) -> str:
    for _ in range(16):
        m = _LEAD.match(text)
        if not m or not m.group(0):
            return text
        text = text[m.end() :]
    return text


def _letter_at(text: str, strict: bool) -> tuple[str, int] | None:
    """The letter token at the start of ``text`` and where its closing wrappers end, if it is one.

    A lower-case letter, and in ``strict`` mode any letter, must stand alone (end of text, a
    newline, punctuation, or a conjunction such as ``because`` after it); ``I`` followed by a
    lower-case word is the pronoun.
    """
    m = _LETTER.match(text)
    if not m:
        return None
    letter = m.group(1)
    end = _CLOSERS.match(text, 1).end()
    alone = _STANDS_ALONE.match(text, end) is not None
    if (strict or letter.islower()) and not alone:
        return None
    if letter == "I" and not alone and re.match(r"\s+[a-z]", text[end:]):
        return None
    return letter.upper(), end


def _read(span: str, strict: bool) -> _Read:
    """Read the choice a statement's object makes."""
    text = _peel(span[:_OBJECT_CHARS])
    if _NEGATION.match(text):
        return _Read(negated=True)
    found = _letter_at(text, strict)
    if found is None:
        return _NOTHING
    letter, end = found
    join = _HEDGE_JOIN.match(text, end)
    if join and join.group(0):
        other = _letter_at(_peel(text[join.end() :]), strict=True)
        if other is not None and other[0] != letter:
            return _Read(hedge=True)
    return _Read(letter=letter)


def _normalise_option(text: str) -> str:
    text = text.replace("\\text{", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    text = re.sub(r"[\s{}]+", " ", text.lower())
    return text.strip(" .;:*")


@dataclass(frozen=True)
class _Statement:
    position: int
    rule: str
    read: _Read


class _Reader:
    """The options of one question, and how a statement's text becomes a choice."""

    def __init__(self, options: Sequence[str]) -> None:
        self.letters = LETTERS[: max(0, min(len(options), len(LETTERS)))]
        texts = {_normalise_option(o): LETTERS[i] for i, o in enumerate(options[: len(self.letters)])}
        # option texts are only usable when they tell the options apart
        self.texts = texts if len(texts) == len(self.letters) else {}
        # a longer text cannot normalise to an option (wrappers, spacing): skip it unread
        self.longest = 2 * max((len(o) for o in options), default=0) + 64

    def option_text(self, text: str) -> str | None:
        """The letter of the one option whose text ``text`` is (wrappers and spacing aside)."""
        if not self.texts or len(text) > self.longest:
            return None
        return self.texts.get(_normalise_option(unbox(text)))


def _statements(text: str, reader: _Reader) -> list[_Statement]:
    found: list[_Statement] = []
    for rule, weak, pattern in _STATEMENTS:
        for m in pattern.finditer(text):
            read = _read(text[m.end() : m.end() + _OBJECT_CHARS], strict=weak)
            if read is _NOTHING and rule == "answer_phrase":
                letter = reader.option_text(text[m.end() : line_end(text, m.end())])
                if letter:
                    found.append(_Statement(m.start(), "answer_phrase:option_text", _Read(letter)))
                continue
            if read is _NOTHING or read.negated:
                continue
            if weak and read.letter and read.letter not in reader.letters:
                continue  # "it is x.", "statement I": a weak phrase with no option's letter states nothing
            found.append(_Statement(m.start(), rule, read))
    for m in _IS_CORRECT.finditer(text):
        letter = m.group(2).upper()
        before = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
        named = m.group(1) or m.group(0)[0] in "(["  # "option e", "(E)"
        if letter in reader.letters and (named or (m.group(2).isupper() and not re.search(r"\w", before))):
            found.append(_Statement(m.start(), "is_correct", _Read(letter)))
    found += _box_statements(text, reader)
    return found


def _box_statements(text: str, reader: _Reader) -> list[_Statement]:
    """One statement per box; a box listed right after a box with another letter (``\\boxed{A},
    \\boxed{C}``, ``\\boxed{A} or \\boxed{C}``) makes the pair a hedge."""
    found: list[_Statement] = []
    previous: tuple[int, str] | None = None  # end and letter of the last box with a letter
    for span in find_boxes(text):
        read = _read(span.content, strict=False)
        if read is _NOTHING:
            letter = reader.option_text(span.content)
            if letter:
                found.append(_Statement(span.start, "boxed:option_text", _Read(letter)))
            continue
        if read.negated:
            continue
        if read.letter:
            if (
                previous is not None
                and previous[1] != read.letter
                and _BETWEEN_LISTED_BOXES.fullmatch(text, previous[0], span.start)
            ):
                found.append(_Statement(span.start, "boxed", _Read(hedge=True)))
            else:
                found.append(_Statement(span.start, "boxed", read))
            previous = (span.end, read.letter)
        else:
            found.append(_Statement(span.start, "boxed", read))
    return found


def _last_line_statement(text: str, reader: _Reader) -> _Statement | None:
    stripped = text.rstrip()
    start = stripped.rfind("\n") + 1
    line = stripped[start:].strip()
    if not line or len(line) > 500:
        return None
    if _LETTER_LIST_LINE.fullmatch(line) and len(set(re.findall(r"\b[A-Ja-j]\b", line.upper()))) > 1:
        return _Statement(start, "last_line", _Read(hedge=True))
    bare = _BARE_LETTER_LINE.fullmatch(line)
    if bare:
        return _Statement(start, "last_line", _Read(bare.group(1).upper()))
    option = _OPTION_LINE.match(line)
    if option and (option.group(1) or option.group(2).isupper()):
        return _Statement(start, "last_line", _Read(option.group(2).upper()))
    letter = reader.option_text(line)
    if letter:
        return _Statement(start, "last_line:option_text", _Read(letter))
    return None


def _bare_letter_line(text: str, letters: str) -> str | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and len(line) <= 40:
            m = _BARE_LETTER_LINE.fullmatch(line)
            if m and m.group(1).upper() in letters:
                return m.group(1).upper()
    return None


def extract_choice(output: str, options: Sequence[str], max_chars: int = MAX_OUTPUT_CHARS) -> Extraction:
    """The option letter chosen by a multiple-choice answer (see the module docstring for the
    rules): the last statement of a choice wins.

    Never raises; ``Extraction(None, method)`` is a miss (``none``, ``hedge`` or
    ``no_such_option``).
    """
    if not isinstance(output, str):
        return Extraction(None, "none")
    reader = _Reader(options)
    text, truncated = bound_text(output, max_chars) if output else ("", False)
    statements = _statements(text, reader)
    last_line = _last_line_statement(text, reader)
    if last_line is not None:
        statements.append(last_line)
    if statements:
        final = max(statements, key=lambda s: s.position)
        if final.read.hedge:
            return Extraction(None, "hedge", truncated)
        if final.read.letter not in reader.letters:
            return Extraction(None, "no_such_option", truncated)
        return Extraction(final.read.letter, final.rule, truncated)
    letter = _bare_letter_line(text, reader.letters)
    if letter:
        return Extraction(letter, "bare_letter", truncated)
    return Extraction(None, "none", truncated)
