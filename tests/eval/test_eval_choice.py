"""Multiple-choice extraction read like a careful human grader: a table of realistic outputs.

Every row is an output a model could write for a SuperGPQA question (up to ten options, ``A``-``J``),
the letter a careful grader reads from it (``None``: no single answer) and the rule that decides.
The classes: the usual formats, lower case, hedges, a later statement beating an earlier one,
phrasings beyond ``the answer is``, an option's text without its letter, letters the question has
no option for, words that only look like letters, negations, outputs with no answer, and (issue 28)
Chinese answer phrases with full-width punctuation, an option's value ending the final sentence
(with its substring traps), and a letter whose restated value is another option's.
"""

from __future__ import annotations

import pytest

from infuser.answers.choice import extract_choice

SPEEDS = ("0.2 m/s", "0.5 m/s", "0.8 m/s", "1.1 m/s", "1.6 m/s", "2.0 m/s", "2.4 m/s", "3.2 m/s", "4.0 m/s", "5.5 m/s")
FOUR = SPEEDS[:4]
TRAPS = ("0 m/s", "6.0 m/s", "0.6 m/s", "16 m/s")  # "0 m/s" lies inside "6.0 m/s"
FORCES = ("5", "5 N", "50 N", "0.5 N")  # "5" inside "5 N", "50 N" and "0.5 N"
TOY = ("5", "6", "7", "8")

TABLE = [
    # -- the usual formats -----------------------------------------------------------------------
    ("The kinetic energy is conserved...\nAnswer: C", SPEEDS, "C", "answer_phrase"),
    ("Reasoning...\nAnswer: $C$", SPEEDS, "C", "answer_phrase"),
    ("**Answer:** (D)", SPEEDS, "D", "answer_phrase"),
    ("So the answer is (B).", SPEEDS, "B", "answer_phrase"),
    ("The correct option is **E**.", SPEEDS, "E", "answer_phrase"),
    ("Therefore, the correct answer is option F.", SPEEDS, "F", "answer_phrase"),
    ("The answer is \\boxed{\\text{F}}", SPEEDS, "F", "boxed"),
    ("Thus $\\boxed{G}$", SPEEDS, "G", "boxed"),
    ("Thinking about it...\n\\boxed{H) 3.2 m/s}", SPEEDS, "H", "boxed"),
    ("Final answer: \\boxed{J}", SPEEDS, "J", "boxed"),
    ("Long\nreasoning\n(J)", SPEEDS, "J", "last_line"),
    ("We compare the momenta.\n**B**", SPEEDS, "B", "last_line"),
    ("The answer is C because the collision is elastic.", SPEEDS, "C", "answer_phrase"),
    ("The final answer is:\n\n**A**", SPEEDS, "A", "last_line"),
    ("ANSWER - D", SPEEDS, "D", "answer_phrase"),
    # -- lower case ------------------------------------------------------------------------------
    ("the answer is c", SPEEDS, "C", "answer_phrase"),
    ("ANSWER: h", SPEEDS, "H", "answer_phrase"),
    ("so the answer is (e).", SPEEDS, "E", "answer_phrase"),
    ("answer: \\boxed{b}", SPEEDS, "B", "boxed"),
    ("my final answer is j", SPEEDS, "J", "answer_phrase"),
    ("...and so\nd", SPEEDS, "D", "last_line"),
    # -- hedges: no single answer -----------------------------------------------------------------
    ("It could be either.\nA or B", SPEEDS, None, "hedge"),
    ("Answer: A, B", SPEEDS, None, "hedge"),
    ("\\boxed{A, C}", SPEEDS, None, "hedge"),
    ("Both fit the data:\n(A) and (B)", SPEEDS, None, "hedge"),
    ("The answer is either C or D.", SPEEDS, None, "hedge"),
    ("Answer: B/C", SPEEDS, None, "hedge"),
    ("So the answer is \\boxed{A} or \\boxed{C}.", SPEEDS, None, "hedge"),
    ("The answer is B.\nOn reflection the answer is A or E.", SPEEDS, None, "hedge"),
    ("Answer: A, since the others are too fast.", SPEEDS, "A", "answer_phrase"),  # a reason, no hedge
    # -- the last statement wins ----------------------------------------------------------------------
    ("The answer is A.\nLet me double-check.\n**Final Answer:** C", SPEEDS, "C", "answer_phrase"),
    ("I first thought the answer is A.\nRechecking the units...\n\\boxed{D}", SPEEDS, "D", "boxed"),
    ("the answer is A?\nNo, the friction term was missing.\nSo, I'll go with C", SPEEDS, "C", "choose"),
    ("Answer: A\nActually no. Answer: D\nfine", SPEEDS, "D", "answer_phrase"),
    ("\\boxed{A} no wait \\boxed{B}", SPEEDS, "B", "boxed"),
    ("Answer: B\n\nOn second thought, option E is correct.", SPEEDS, "E", "is_correct"),
    ("The answer is C.\nI hope that helps!", SPEEDS, "C", "answer_phrase"),
    ("I pick \\boxed{D}.\nThanks for the question.", SPEEDS, "D", "boxed"),
    ("Answer: B\nExplanation: option A is correct only for ideal gases.", SPEEDS, "B", "answer_phrase"),
    # -- phrasings beyond "the answer is" ----------------------------------------------------------
    ("Checking each one, option E is correct", SPEEDS, "E", "is_correct"),
    ("(G) is the correct answer.", SPEEDS, "G", "is_correct"),
    ("E is right.", SPEEDS, "E", "is_correct"),
    ("The answer is not A. It is D.", SPEEDS, "D", "it_is"),
    ("Answer: I think it's B", SPEEDS, "B", "it_is"),
    ("None matches exactly; the closest is G", SPEEDS, "G", "closest"),
    ("The closest match is (F).", SPEEDS, "F", "closest"),
    ("v = sqrt(2gh) = 3.2 m/s, which corresponds to option H", SPEEDS, "H", "refers_to"),
    ("The speed comes out at 0.8 m/s, so option C.", SPEEDS, "C", "refers_to"),
    ("so option D", SPEEDS, "D", "refers_to"),
    ("Hence, option B.", SPEEDS, "B", "refers_to"),
    ("I'll go with C.", SPEEDS, "C", "choose"),
    ("I choose option I.", SPEEDS, "I", "choose"),
    ("Let's pick (A).", SPEEDS, "A", "choose"),
    ("After comparing the options:\nOption C: 0.8 m/s", SPEEDS, "C", "last_line"),
    ("Verdict:\nC) 0.8 m/s", SPEEDS, "C", "last_line"),
    ("Answer: (C) 0.8 m/s", SPEEDS, "C", "answer_phrase"),
    # -- an option's text without its letter -------------------------------------------------------
    ("The final speed is therefore\n0.8 m/s", SPEEDS, "C", "last_line:option_text"),
    ("The answer is 2.4 m/s.", SPEEDS, "G", "answer_phrase:option_text"),
    ("\\boxed{5.5 m/s}", SPEEDS, "J", "boxed:option_text"),
    ("The speed is about 1 m/s", SPEEDS, None, "none"),  # matches no option
    # -- letters the question has no option for ----------------------------------------------------
    ("Answer: E", FOUR, None, "no_such_option"),
    ("The answer is B.\nWait, recounting: the answer is F.", FOUR, None, "no_such_option"),
    ("Answer: K", SPEEDS, None, "no_such_option"),
    ("It is E.\nAnswer: B", FOUR, "B", "answer_phrase"),
    ("Answer: B\nIt is x.", FOUR, "B", "answer_phrase"),  # a variable after a weak phrase is nothing
    ("Answer: D", FOUR, "D", "answer_phrase"),
    # -- words that look like letters ------------------------------------------------------------------
    ("The answer is Apple pie.", SPEEDS, None, "none"),
    ("The answer is, I think, unclear.", SPEEDS, None, "none"),
    ("The answer is a bit subtle and I cannot decide.", SPEEDS, None, "none"),
    ("It is A good idea to check units.\nAnswer: C", SPEEDS, "C", "answer_phrase"),
    ("Statement I is correct, so the answer is B.", SPEEDS, "B", "answer_phrase"),
    ("The answer is B.\nStatement I is correct.", SPEEDS, "B", "answer_phrase"),
    ("Answer: I'm not sure.", SPEEDS, None, "none"),
    ("Answer: I", SPEEDS, "I", "answer_phrase"),
    # -- negations -----------------------------------------------------------------------------------
    ("The answer is not C.", SPEEDS, None, "none"),
    ("It's not A, it's B.", SPEEDS, "B", "it_is"),
    ("Answer: B\nThe answer is not D.", SPEEDS, "B", "answer_phrase"),
    # -- no answer ----------------------------------------------------------------------------------
    ("", SPEEDS, None, "none"),
    ("No idea.", SPEEDS, None, "none"),
    ("\\boxed{", SPEEDS, None, "none"),
    ("The final answer is", SPEEDS, None, "none"),
    ("We get it:\nC\nThat is my choice.", SPEEDS, "C", "bare_letter"),
    # -- Chinese answer phrases, full-width punctuation and letters --------------------------------
    ("由动量守恒得 v = 0.8 m/s。\n答案：（C）", SPEEDS, "C", "answer_phrase"),
    ("因此，正确答案是C。", SPEEDS, "C", "answer_phrase"),
    ("所以最终答案为：【B】", SPEEDS, "B", "answer_phrase"),
    ("答案：Ｅ", SPEEDS, "E", "answer_phrase"),  # a full-width letter
    ("正确答案是 c，因为摩擦力做负功。", SPEEDS, "C", "answer_phrase"),
    ("答案是选项H。", SPEEDS, "H", "answer_phrase"),
    ("答案：B\n再检查一遍，正确答案应为D。", SPEEDS, "D", "answer_phrase"),  # the last statement wins
    ("综上，故选 D", SPEEDS, "D", "choose"),
    ("故选D项。", SPEEDS, "D", "choose"),
    ("我们选择（A）。", SPEEDS, "A", "choose"),
    ("答案：A或B", SPEEDS, None, "hedge"),
    ("答案：A、C", SPEEDS, None, "hedge"),
    ("答案：E", FOUR, None, "no_such_option"),
    ("答案不是A。", SPEEDS, None, "none"),
    ("不应选A。", SPEEDS, None, "none"),  # "选A" after a negation
    ("选项A是错误的。", SPEEDS, None, "none"),  # naming an option chooses nothing
    ("答案是 2.4 m/s。", SPEEDS, "G", "answer_phrase:option_text"),
    # -- an option's text ending the final sentence --------------------------------------------------
    ("Momentum is conserved, so the final speed is 0.8 m/s.", SPEEDS, "C", "final_sentence:option_text"),
    ("Energy is conserved. The final speed is therefore $2.4$ m/s.", SPEEDS, "G", "final_sentence:option_text"),
    ("We get a final speed of **5.5 m/s**.", SPEEDS, "J", "final_sentence:option_text"),
    ("最终速度为0.8 m/s。", SPEEDS, "C", "final_sentence:option_text"),
    ("The answer is A.\nRechecking the signs, the final speed is 0.8 m/s.", SPEEDS, "C", "final_sentence:option_text"),
    ("After the collision the speed is 6.0 m/s.", TRAPS, "B", "final_sentence:option_text"),  # not "0 m/s"
    ("The block stops: its final speed is 0 m/s.", TRAPS, "A", "final_sentence:option_text"),
    ("The speed is 16 m/s.", TRAPS, "D", "final_sentence:option_text"),
    ("The net force is 5 N.", FORCES, "B", "final_sentence:option_text"),  # the longest match, not "5"
    ("The net force is 0.5 N.", FORCES, "D", "final_sentence:option_text"),
    ("3 + 4 is 7.", TOY, "C", "final_sentence:option_text"),
    ("The final speed is 0.5 m/s or 0.8 m/s.", SPEEDS, None, "none"),  # two options named
    ("It starts at 0.5 m/s, so the final speed is 0.8 m/s.", SPEEDS, None, "none"),
    ("The speed is not 0.5 m/s.", SPEEDS, None, "none"),
    ("The acceleration is 1.1 m/s^2.", SPEEDS, None, "none"),  # "1.1 m/s" is not a value of its own here
    ("The velocity is -0.5 m/s.", SPEEDS, None, "none"),
    ("Answer: C\nThis is because the initial speed was 0.5 m/s.", SPEEDS, "C", "answer_phrase"),  # a reason
    ("Answer: C\nThe speed is 0.8 m/s.", SPEEDS, "C", "final_sentence:option_text"),  # it agrees
    # -- a letter whose restated value is another option's ------------------------------------------
    ("Answer: C (0.5 m/s)", SPEEDS, None, "contradicts_option"),
    ("Answer: C (0.8 m/s)", SPEEDS, "C", "answer_phrase"),
    ("The answer is (C) 0.5 m/s.", SPEEDS, None, "contradicts_option"),
    ("\\boxed{C) 0.5 m/s}", SPEEDS, None, "contradicts_option"),
    ("After comparing the options:\nOption C: 0.5 m/s", SPEEDS, None, "contradicts_option"),
    ("答案：C（0.5 m/s）", SPEEDS, None, "contradicts_option"),
    ("Answer: A (6.0 m/s)", TRAPS, None, "contradicts_option"),
    ("Answer: B (6.0 m/s)", TRAPS, "B", "answer_phrase"),  # "0 m/s" lies inside its own value
    ("Answer: C, i.e. 0.8 m/s.", SPEEDS, "C", "answer_phrase"),
    ("Answer: C, because 0.5 m/s is too slow.", SPEEDS, "C", "answer_phrase"),  # a reason, no restatement
    ("Answer: C (0.5 m/s)\nNo: Answer: C (0.8 m/s)", SPEEDS, "C", "answer_phrase"),
]


def test_the_table_covers_every_class() -> None:
    assert len(TABLE) >= 120
    assert {method for *_, method in TABLE} >= {
        "answer_phrase", "boxed", "choose", "is_correct", "refers_to", "it_is", "closest", "last_line",
        "last_line:option_text", "answer_phrase:option_text", "boxed:option_text", "final_sentence:option_text",
        "hedge", "no_such_option", "contradicts_option", "bare_letter", "none",
    }


@pytest.mark.parametrize(("output", "options", "letter", "method"), TABLE)
def test_a_careful_graders_reading(output: str, options: tuple[str, ...], letter: str | None, method: str) -> None:
    extraction = extract_choice(output, options)
    assert (extraction.answer, extraction.method) == (letter, method)


@pytest.mark.parametrize("count", range(2, 11))
def test_letters_outside_the_option_count_are_never_extracted(count: int) -> None:
    options = SPEEDS[:count]
    for letter in "ABCDEFGHIJ":
        for output in (f"Answer: {letter}", f"\\boxed{{{letter}}}", f"so option {letter}", f"Reasoning.\n{letter}"):
            answer = extract_choice(output, options).answer
            assert answer == (letter if "ABCDEFGHIJ".index(letter) < count else None), output


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("A", "A"),
        ("Answer: B", "B"),
        (" 3 + 4 is 7, so \\boxed{7}", "C"),  # the toy Solver boxes the option's text
        (" 2 + 4 is 6, so \\boxed{6}", "B"),
        (" 3 + 4 is 7, so \\boxed{7", None),  # cut off
        (" 3 + 4 is 9, so \\boxed{9}", None),  # not an option
    ],
)
def test_the_toy_solvers_outputs_are_graded_as_before(output: str, letter: str | None) -> None:
    assert extract_choice(output, TOY).answer == letter
