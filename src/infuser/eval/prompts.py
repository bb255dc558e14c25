"""Prompt builders for the bundled benchmarks, and chat-template application.

OlympiadBench:

* ``official``: the official-style English prompt: competition framing, a sentence on the
  answer type, multiple-answer and unit handling, and the required closing sentence
  ``So the final answer is \\boxed{...}.`` (worded by us after the published protocol);
* ``plain``: the question followed by "reason step by step, put the final answer in \\boxed{}".

SuperGPQA (options rendered ``A) ...`` one per line):

* ``zero_shot``: the last line must read ``Answer: $LETTER``;
* ``five_shot``: five worked exemplars written for infuser (no benchmark item), then the question;
* ``boxed``: the chosen letter goes in ``\\boxed{}``.

HumanEval and HumanEval+:

* ``plain``: the problem's prompt as it is (imports, signature, docstring), for the model to
  continue with the function's body (HumanEval's protocol; base models);
* ``instruct``: one sentence asking for the whole function in a ```` ```python ```` block, then
  the prompt in such a block (instruct and chat models).

The builders return plain text; :func:`infuser.data.chat.render_prompt` wraps it in the tokenizer's chat template
when asked to and the tokenizer has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from infuser.answers.choice import LETTERS
from infuser.eval.data import CodeRow, OlympiadRow, SuperGPQARow

OlympiadPrompt = Literal["official", "plain"]
SuperGPQAPrompt = Literal["zero_shot", "five_shot", "boxed"]
OLYMPIAD_PROMPTS: tuple[str, ...] = ("official", "plain")
SUPERGPQA_PROMPTS: tuple[str, ...] = ("zero_shot", "five_shot", "boxed")
CODE_PROMPTS: tuple[str, ...] = ("plain", "instruct")

_TYPE_PHRASES = {
    "Numerical": "a numerical value",
    "Expression": "an expression",
    "Equation": "an equation",
    "Tuple": "a tuple",
    "Interval": "an interval",
}


def _type_phrase(answer_type: str) -> str:
    phrases = [_TYPE_PHRASES.get(part.strip(), "a value") for part in answer_type.split(",") if part.strip()]
    phrases = list(dict.fromkeys(phrases)) or ["a value"]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _competition(row: OlympiadRow) -> str:
    subject = "physics" if row.subject.lower().startswith("phys") else "mathematics"
    return f"an international {subject} competition"


def olympiad_prompt(row: OlympiadRow, variant: str = "official") -> str:
    """The prompt for one OlympiadBench row. Physics ``context`` is put before the question.

    Raises:
        ValueError: unknown variant.
    """
    problem = row.question.strip()
    if row.context and row.context.strip():
        problem = f"{row.context.strip()}\n\n{problem}"
    if variant == "plain":
        return (
            f"{problem}\n\n"
            "Reason step by step, and put your final answer within \\boxed{}."
        )
    if variant != "official":
        raise ValueError(f"unknown OlympiadBench prompt {variant!r}; choose from {OLYMPIAD_PROMPTS}")
    kind = _type_phrase(row.answer_type)
    if row.is_multiple_answer:
        type_sentence = f"This problem has more than one answer, and each answer is {kind}."
        box = "\\boxed{all answers, separated by commas}"
    else:
        type_sentence = f"The answer to this problem is {kind}."
        box = "\\boxed{answer}"
    unit_sentence = ""
    if row.unit and row.unit.strip():
        unit_sentence = (
            f" The answer is measured in {row.unit.strip()}; do not put the unit inside \\boxed{{}}."
        )
    instructions = (
        f"The problem below comes from {_competition(row)}. {type_sentence} "
        "Work out the answer from the conditions and information given. Write the variables, "
        "formulas and results in your solution in LaTeX. End your solution with the sentence "
        f"\"So the final answer is {box}.\" and state the result explicitly.{unit_sentence}"
    )
    return f"{instructions}\n\n{problem}"


def render_options(options: Sequence[str]) -> str:
    """Options as ``A) text`` lines."""
    return "\n".join(f"{LETTERS[i]}) {text.strip()}" for i, text in enumerate(options))


def _letter_list(n: int) -> str:
    letters = list(LETTERS[:n])
    return ", ".join(letters[:-1]) + f" or {letters[-1]}"


# Five worked exemplars written for infuser (not taken from any benchmark): one each from physics,
# chemistry, mathematics, biology and engineering, answered in the zero-shot format.
FIVE_SHOT_EXEMPLARS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    (
        "A 2.0 kg cart moving at 3.0 m/s on a frictionless track collides with and sticks to a "
        "1.0 kg cart at rest. What is the speed of the pair just after the collision?",
        ("1.0 m/s", "1.5 m/s", "2.0 m/s", "3.0 m/s", "4.5 m/s", "6.0 m/s"),
        "Momentum is conserved in the collision: 2.0 kg x 3.0 m/s = 6.0 kg m/s before, and the "
        "combined mass is 3.0 kg afterwards, so v = 6.0 / 3.0 = 2.0 m/s.",
        "C",
    ),
    (
        "How many moles of oxygen gas (O2) are needed to burn 2 mol of methane (CH4) completely "
        "to carbon dioxide and water?",
        ("1 mol", "2 mol", "3 mol", "4 mol", "6 mol", "8 mol", "0.5 mol"),
        "The balanced equation is CH4 + 2 O2 -> CO2 + 2 H2O, so each mole of methane uses 2 mol "
        "of O2; 2 mol of methane use 4 mol of O2.",
        "D",
    ),
    (
        "What is the sum of the roots of the polynomial x^3 - 6x^2 + 11x - 6?",
        ("-6", "-1", "1", "3", "6", "11", "12", "36"),
        "For a monic cubic x^3 + a x^2 + b x + c, the roots sum to -a (Vieta). Here a = -6, so "
        "the sum is 6 (the roots are 1, 2 and 3).",
        "E",
    ),
    (
        "In a cross between two pea plants that are both heterozygous for a single gene with "
        "complete dominance (Aa x Aa), what fraction of the offspring is expected to show the "
        "recessive phenotype?",
        ("0", "1/4", "1/8", "1/3", "1/2", "3/4"),
        "The offspring genotypes are AA, Aa, Aa and aa in equal proportions; only aa shows the "
        "recessive phenotype: 1 out of 4, that is 1/4.",
        "B",
    ),
    (
        "Two resistors of 6 ohm and 3 ohm are connected in parallel across an ideal 12 V battery. "
        "What current does the battery deliver?",
        ("6 A", "1.3 A", "2 A", "4 A", "9 A", "12 A", "18 A", "24 A", "36 A", "0.75 A"),
        "The parallel resistance is (6 x 3) / (6 + 3) = 2 ohm, so the current is "
        "12 V / 2 ohm = 6 A.",
        "A",
    ),
)


def _zero_shot_instruction(n_options: int) -> str:
    return (
        "Answer the following multiple-choice question. Exactly one option is correct. Think it "
        "through, and make the last line of your response read 'Answer: $LETTER' (without "
        f"quotes), where LETTER is one of {_letter_list(n_options)}."
    )


def supergpqa_prompt(row: SuperGPQARow, variant: str = "zero_shot") -> str:
    """The prompt for one SuperGPQA-shaped row.

    Raises:
        ValueError: unknown variant.
    """
    body = f"{row.question.strip()}\n\n{render_options(row.options)}"
    if variant == "zero_shot":
        return f"{_zero_shot_instruction(len(row.options))}\n\n{body}"
    if variant == "boxed":
        return (
            "Answer the following multiple-choice question. Exactly one option is correct. Reason "
            "step by step, then put only the letter of the correct option "
            f"({_letter_list(len(row.options))}) inside \\boxed{{}}.\n\n{body}"
        )
    if variant == "five_shot":
        shots = []
        for question, options, reasoning, letter in FIVE_SHOT_EXEMPLARS:
            shots.append(
                f"Question: {question}\n\n{render_options(options)}\n\n{reasoning}\nAnswer: {letter}"
            )
        examples = "\n\n---\n\n".join(shots)
        return (
            f"{_zero_shot_instruction(len(row.options))} Five solved examples come first.\n\n"
            f"{examples}\n\n---\n\nQuestion: {body}"
        )
    raise ValueError(f"unknown SuperGPQA prompt {variant!r}; choose from {SUPERGPQA_PROMPTS}")


def code_prompt(row: CodeRow, variant: str = "plain") -> str:
    """The prompt for one HumanEval-shaped row.

    Raises:
        ValueError: unknown variant.
    """
    if variant == "plain":
        return row.prompt
    if variant == "instruct":
        return (
            "Complete the following Python function. Reply with the complete function, including its "
            f"signature and any imports it needs, in one ```python code block.\n\n```python\n{row.prompt.rstrip()}\n```"
        )
    raise ValueError(f"unknown HumanEval prompt {variant!r}; choose from {CODE_PROMPTS}")
