"""The option letter a multiple-choice answer picks (SuperGPQA, the toy world's Solver).

The Solver's 0/1 training reward and every reported multiple-choice accuracy use
:func:`extract_choice`, so a letter is read the same way in training and in evaluation.

It reads an output the way a careful human grader does: find every place where the model states
a choice, and take the **last** one, since a model that changes its mind ends with its final
choice. Statements are found by these rules, over the output's bounded tail (its last
``max_chars`` characters), case-insensitively, with full-width forms (``：（Ｂ）。、``) read as their
ASCII twins:

==================  =============================================================================
rule                a statement of choice
==================  =============================================================================
``answer_phrase``   ``the answer is C``, ``Answer: c``, ``**Final Answer:** C``, ``The correct
                    option is (E)``, ``Answer: I think it's B``, ``the answer is 0.8 m/s`` (an
                    option's text), ``答案：（B）``, ``正确答案是C。``, ``最终答案为 D``
``boxed``           ``\\boxed{C}``, ``\\boxed{\\text{C}}``, ``\\boxed{C) 0.8 m/s}``, ``\\boxed{0.8 m/s}``
``choose``          ``I'll go with C``, ``I choose option B``, ``let's pick D``, ``故选 D``, ``应选B``
``is_correct``      ``option E is correct``, ``(E) is the correct answer.``, ``E is right``
``refers_to``       ``..., which corresponds to option H``, ``so option D``, ``i.e. option A``
``it_is``           ``It is D.``, ``it's B`` (after ``The answer is not A.``)
``closest``         ``the closest is G``, ``the closest option is G``
``last_line``       the output's last line is a choice: ``C``, ``(C)``, ``**C**``, ``Option C: 0.8
                    m/s``, ``C) 0.8 m/s``, or exactly one option's text
``final_sentence``  the output's final sentence, holding no other statement, ends with one
                    option's text as the value it states: ``the final speed is 0.8 m/s.``
==================  =============================================================================

What a statement says is read after wrappers (``**``, ``$``, ``\\text{}``, ``\\boxed{}``,
parentheses, ``option``, ``choice``, ``letter``) and hedging words (``I think``, ``it's``,
``probably``, ``either``) are peeled off. A letter counts only as a letter: ``Apple``, ``I'm`` and
the pronoun in ``I think`` are words; a lower-case letter must stand alone (``the answer is c.``,
not ``the answer is a bit...``), and in the weaker rules (``choose`` to ``closest``) an upper-case
one too (``It is A good idea`` states nothing). Four kinds of statement choose nothing, and
when one of them is the last statement the output is a miss:

* a **hedge**, two different letters in one statement (``A or B``, ``Answer: A, B``,
  ``\\boxed{A, C}``, ``(A) and (B)``, ``\\boxed{A} or \\boxed{C}``, a last line listing
  letters): no single answer (method ``hedge``);
* a letter the question has no option for (``Answer: E`` with four options; method
  ``no_such_option``): letters outside the option count are never extracted;
* a letter whose restated value is another option's text (``Answer: C (0.5 m/s)`` when ``0.5
  m/s`` is option B; method ``contradicts_option``): a careful grader cannot tell which is meant;
* a negation (``the answer is not A``, ``答案不是A``) is no statement at all.

An option's text counts only where it stands as a value of its own (``0 m/s`` is not named inside
``6.0 m/s``), the longest of overlapping mentions wins, and a final sentence naming two different
options states nothing.

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

_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {
    0x3000: " ", 0x3001: ",", 0x3002: ".", 0x3010: "[", 0x3011: "]", 0x300C: '"', 0x300D: '"',
}
"""Full-width forms (``答案：（Ｂ）。``) read as their ASCII twins, one character for one, so that
every rule reads Chinese punctuation and positions in the text do not move."""

_STATEMENTS = (
    # (rule, weak, phrase): a weak rule's letter must stand alone and be an option's
    ("answer_phrase", False, re.compile(
        r"(?i)\b(?:(?:correct|final|best|right|most\s+likely|most\s+appropriate)\s+)?(?:answer|option|choice)"
        r"(?:\s+to\s+(?:this|the)\s+(?:question|problem))?"
        r"(?:\s+(?:is|was|would\s+be|should\s+be|will\s+be|must\s+be)\b|\s{0,3}[:：=]|\s{1,3}[-–—]\s)"
    )),
    # Chinese has no spaces, so no \b: "所以答案是C", "正确答案：（B）" (full-width forms read as ASCII)
    ("answer_phrase", False, re.compile(
        r"(?:(?:(?:正确|最终|最后|标准)的?)?答案|(?:正确|最终)的?选项)\s{0,3}"
        r"(?:(?:应该|应当|应|就|即)?\s{0,3}(?:是|为|选)|[:=])"
    )),
    ("choose", True, re.compile(
        r"(?i)\b(?:(?:i|we)(?:'ll|’ll|\s+will|\s+would|'d|’d)?\s+|let's\s+|let’s\s+)?"
        r"(?:go(?:ing)?\s+with|choose|pick|select|opt\s+for)\b"
    )),
    # "故选 D", "应选B", "我们选择A"; not after a negation ("不应选A")
    ("choose", True, re.compile(r"(?<![不没别])(?:(?:故|所以|因此|因而|则|应该|应|我们|我)选择?|选择)")),
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
    r"|(?:probably|likely|most\s+likely|definitely|clearly|either|therefore|thus|so|hence|then|simply)\b"
    r"|选项|是|为)"
)
_CLOSERS = re.compile(r"(?:[)\]}*_$`'\"”’]|\\[)\]])*")
_LETTER = re.compile(r"([A-Za-z])(?![A-Za-z0-9'’]|\.[A-Za-z]\.)")  # "i.e." and "e.g." are no letters
_STANDS_ALONE = re.compile(
    r"(?:$|[\n.,;:!?]|[\u4e00-\u9fff]|\s+(?:$|\n|[-–—(]|(?:because|since|as|which|with|is|was|and|or|but|for)\b))"
)  # a Latin letter right before a Chinese character stands alone ("故选D项")
_CONNECTOR = r"(?:,|/|&|\bor\b|\band\b|\\text\{\s*or\s*\}|\\lor\b|或者|或|和)"
_HEDGE_JOIN = re.compile(rf"\s*{_CONNECTOR}\s*")
_BETWEEN_LISTED_BOXES = re.compile(rf"[\s$]*{_CONNECTOR}?[\s$]*")
_NEGATION = re.compile(r"(?i)(?:not|n't|n’t)\b|不|并非")
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
    """What a statement says: a letter (``A``..``Z``), perhaps contradicted by the value restated
    after it, a hedge, a negation, or nothing."""

    letter: str | None = None
    hedge: bool = False
    negated: bool = False
    contradicted: bool = False


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


def _read(span: str, strict: bool, reader: _Reader) -> _Read:
    """Read the choice a statement's object makes.

    A letter followed by another option's text (``Answer: C (0.5 m/s)`` where ``0.5 m/s`` is
    option B) contradicts itself: a careful grader cannot tell which of the two is meant.
    """
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
    restated = reader.restated(text[end:])
    return _Read(letter=letter, contradicted=restated is not None and restated != letter)


def _normalise_option(text: str) -> str:
    """An option's text, or text that may name one, without case, math wrappers and extra spacing."""
    text = text.translate(_HALF_WIDTH).replace("\\text{", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    text = re.sub(r"[\s{}]+", " ", text.lower())
    return text.strip(" .;:*")


_RESTATEMENT_LEAD = re.compile(r"\s{0,3}(?:[(\[:=,]|[-–—]{1,2})?\s{0,3}(?:i\.e\.,?\s{0,3})?")
_NOT_OWN_VALUE_BEFORE = re.compile(r"[A-Za-z0-9.+\-^_/\\]")
_NOT_OWN_VALUE_AFTER = re.compile(r"[A-Za-z0-9^_/]|[.,]\d")
_RESTATEMENT_END = re.compile(r"\s{0,3}(?:$|[)\].,;:!?*_'\"”’]|\s(?:because|since|as|which|with|and|but|for)\b)")
_SENTENCE_TAIL = re.compile(r"[\s.,;:!?)\]*_'\"”’]*")
_VALUE_LINK = re.compile(
    r"(?:\b(?:is|are|was|were|be|becomes?|equals?|equal\s+to|of)|[=:≈]|\\approx|等于|约为|为|是|约)"
    r"(?:\s{1,3}(?:approximately|about|around|roughly|exactly|therefore|thus|hence|then|just|simply)){0,2}"
    r"[\s*_(]{0,6}$"
)
_NOT_A_CONCLUSION = re.compile(
    r"(?i)\b(?:because|since|if|unless|although|though|whereas|while|when|than|instead|rather|compared"
    r"|not|never|neither|nor)\b|因为|如果|不|而非"
)
_SENTENCE_END = re.compile(r"[.!?](?:\s+|(?=[\u4e00-\u9fff]))")
_SENTENCE_CHARS = 400
"""How much of the last line the final-sentence rule reads (its tail)."""


def _own_value(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` stands as a value of its own: ``0 m/s`` does not inside
    ``6.0 m/s``, nor ``2`` inside ``2.5`` or ``-2``."""
    before = text[start - 1] if start else " "
    return not _NOT_OWN_VALUE_BEFORE.match(before) and not _NOT_OWN_VALUE_AFTER.match(text, end)


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

    def named(self, normalised: str) -> list[tuple[int, int, str]]:
        """Where ``normalised`` names an option by its text: ``(start, end, letter)`` in order.

        Only mentions that stand as their own value count, and of overlapping mentions the
        longest wins, so ``6.0 m/s`` names only ``6.0 m/s`` when ``0 m/s`` is an option too.
        """
        mentions = []
        for option, letter in self.texts.items():
            start = normalised.find(option) if option else -1
            while start >= 0:
                if _own_value(normalised, start, start + len(option)):
                    mentions.append((start, start + len(option), letter))
                start = normalised.find(option, start + 1)
        covered = bytearray(len(normalised))
        kept = []
        for start, end, letter in sorted(mentions, key=lambda m: m[0] - m[1]):  # longest first
            if not any(covered[start:end]):
                covered[start:end] = b"\x01" * (end - start)
                kept.append((start, end, letter))
        return sorted(kept)

    def restated(self, rest: str) -> str | None:
        """The option whose text ``rest`` (what follows a letter) begins with as a value of its
        own, as in ``C (0.8 m/s)``, ``C) 0.8 m/s``, ``C: 0.8 m/s``."""
        if not self.texts:
            return None
        rest = rest[_RESTATEMENT_LEAD.match(rest).end() :].split("\n", 1)[0][: self.longest]
        normalised = _normalise_option(rest)
        first = next(iter(self.named(normalised)), None)
        if first is None or first[0] != 0:
            return None
        return first[2] if _RESTATEMENT_END.match(normalised, first[1]) else None


def _statements(text: str, reader: _Reader) -> list[_Statement]:
    found: list[_Statement] = []
    for rule, weak, pattern in _STATEMENTS:
        for m in pattern.finditer(text):
            read = _read(text[m.end() : m.end() + _OBJECT_CHARS], weak, reader)
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
        read = _read(span.content, False, reader)
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
        letter = option.group(2).upper()
        restated = reader.restated(line[option.end() :])
        return _Statement(start, "last_line", _Read(letter, contradicted=restated not in (None, letter)))
    letter = reader.option_text(line)
    if letter:
        return _Statement(start, "last_line:option_text", _Read(letter))
    return None


def _final_sentence_statement(text: str, reader: _Reader) -> _Statement | None:
    """The output's final sentence when it states an option's value without its letter (``The
    final speed is therefore 0.8 m/s.``).

    The sentence must end with one option's text, as a value of its own, after a word that
    states a value (``is``, ``=``, ``of``, ``为``...), and hold no reason, condition, comparison
    or negation before it (``This is because the initial speed was 0.5 m/s.`` explains, it does not
    choose); a sentence that names two different options states no choice.
    """
    stripped = text.rstrip()
    line_start = max(stripped.rfind("\n") + 1, len(stripped) - _SENTENCE_CHARS)
    start = line_start
    for m in _SENTENCE_END.finditer(stripped, line_start):
        if m.end() < len(stripped):
            start = m.end()
    sentence = _normalise_option(stripped[start:])
    named = reader.named(sentence)
    if not named or len({letter for *_, letter in named}) > 1:
        return None
    value_start, value_end, letter = named[-1]
    if not _SENTENCE_TAIL.fullmatch(sentence, value_end) or not _VALUE_LINK.search(sentence, 0, value_start):
        return None
    if _NOT_A_CONCLUSION.search(sentence, 0, value_start):
        return None
    return _Statement(start, "final_sentence:option_text", _Read(letter))


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
    text = text.translate(_HALF_WIDTH)
    statements = _statements(text, reader)
    last_line = _last_line_statement(text, reader)
    if last_line is not None:
        statements.append(last_line)
    sentence = _final_sentence_statement(text, reader)
    if sentence is not None and all(s.position < sentence.position for s in statements):
        statements.append(sentence)  # only a final sentence that holds no other statement
    if statements:
        final = max(statements, key=lambda s: s.position)
        if final.read.hedge:
            return Extraction(None, "hedge", truncated)
        if final.read.letter not in reader.letters:
            return Extraction(None, "no_such_option", truncated)
        if final.read.contradicted:
            return Extraction(None, "contradicts_option", truncated)
        return Extraction(final.read.letter, final.rule, truncated)
    letter = _bare_letter_line(text, reader.letters)
    if letter:
        return Extraction(letter, "bare_letter", truncated)
    return Extraction(None, "none", truncated)
