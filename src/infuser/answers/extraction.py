"""What every extractor returns, and the bounded tail of an output that it reads.

Model output is untrusted: every extractor takes any ``str``, never raises, and reads at most the
last :data:`MAX_OUTPUT_CHARS` characters (answers come last).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_OUTPUT_CHARS = 32_768
"""Default bound on the judged part of an output (its tail)."""


@dataclass(frozen=True)
class Extraction:
    """An extracted answer and how it was found.

    Attributes:
        answer: the answer text (OlympiadBench) or option letter (SuperGPQA); ``None`` when the
            output has no recognisable answer (a *miss*).
        method: which rule found it (``"final_answer_line:boxed"``, ``"answer_phrase"``...), or
            why there is none (``"none"``, ``"unclosed_box"``, ``"hedge"``,
            ``"no_such_option"``). Recorded per item so that extraction failures can be audited.
        truncated: the output was longer than the bound and only its tail was read.
    """

    answer: str | None
    method: str
    truncated: bool = False


def bound_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Keep at most the last ``max_chars`` characters of ``text``.

    The tail is kept because answers (``So the final answer is``, ``Answer: X``) come at the end of
    a generation; a runaway model that writes a megabyte still gets its last lines judged.

    Returns:
        The bounded text and whether anything was cut.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if len(text) <= max_chars:
        return text, False
    return text[-max_chars:], True


def line_end(text: str, start: int) -> int:
    """The index of the end of the line that contains ``start`` (its newline, or the text's end)."""
    end = text.find("\n", start)
    return len(text) if end < 0 else end
