"""The rule world: a toy world whose target skill is a rule, so learning it on some facts transfers.

The aligned toy world (:mod:`infuser.toy.world`) cannot tell curricula apart: its weak kind is a
lookup table of products, so a question mostly helps its own fact, and that weak kind is also the
target's main kind, so any reward that seeks pass rates near 1/2 finds it. Here the kinds play
separate parts:

========================  =========================  ====================  =====================
kind                      Solver skill of the base   share of document     share of target and
                                                     facts                 held-out questions
========================  =========================  ====================  =====================
``sum``, ``difference``   one-digit, ~0.95 (easy)    ~38%                  30%
``product``               one-digit, ~0.5            ~26%                  0% (the distractor)
``carry``                 two-digit + one-digit      ~36% (one in every    70% (the target rule)
                          with a carry, ~0.2         document)
========================  =========================  ====================  =====================

(Document shares with :attr:`RuleWorldConfig.document_kind_weights` and ``required_kinds:
[carry]``, as ``configs/rules.yaml`` sets.) The Solver answers a two-digit sum column by column,
adding the carried one to the tens: ``" 7 plus 5 is 12, 2 plus 1 is 3, so \\boxed{32}"``, and
every digit is a token of its own. The base has the column method (``no_carry`` sums, which it
always gets right: ``" 3 plus 5 is 8, 2 plus 0 is 2, so \\boxed{28}"``) but usually forgets the
carry: its typical mistake adds 0 to the tens where a carry is due. The carry is one token, decided
the same way for every pair of operands after a ones digit sum of two digits, so a Solver trained
to carry on some pairs carries on all of them,
while products stay a table: training on them helps nothing else. Pass-rate rewards point at the
products; the target's gradient points at the carry.

Every pair of operands belongs to one of two halves of its kind's range, fixed by the world (not
by any seed): documents and every question set but ``heldout`` draw from one half, the
``heldout`` set from the other, so no held-out question shares its operands with a document or
the target set, and a held-out gain can only come from a rule.

World instances (``world_seed``, on the documents and on both question sets): the fixed world
above is one instance of the rule world; ``world_seed: n`` is another, whose operand split, and
whose documents' and question sets' streams, are keyed by ``n`` as well. The kinds, their
mixes and the Solver's skills stay the world's (the base is pretrained on every operand pair, so
no instance's split favours it), and within an instance the held-out half is again disjoint from
what documents and the target set draw. A benchmark whose runs each take their seed as the
instance (``Profile.seed_keys``) therefore spreads its intervals over worlds, not over one
world's sampling noise. The documents, target set and held-out set of one run must name the
same instance: their halves agree only then.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from infuser.data.questions import MCQuestion
from infuser.toy.sources import ToyDocuments, ToyQuestions
from infuser.toy.world import ArithmeticWorld, Fact, check_weights, one_line_answer

RULE_KINDS = ("sum", "difference", "product", "carry", "no_carry")
HELDOUT_SPLIT = "heldout"
COLUMN_KINDS = ("carry", "no_carry")  # worked column by column


def _pairs(kind: str) -> list[tuple[int, int]]:
    """Every (left, right) operand pair of ``kind``, in a fixed order."""
    digits = range(10)
    if kind in ("sum", "product"):
        return [(a, b) for a in digits for b in digits]
    if kind == "difference":
        return [(a, b) for a in digits for b in digits if a >= b]
    carries = kind == "carry"
    return [(a, b) for a in range(10, 90) for b in digits if (a % 10 + b >= 10) == carries]


def _split_pairs(kind: str, instance: int | None = None) -> dict[bool, list[tuple[int, int]]]:
    """``kind``'s pairs by whether they are held out: half of the operand sets (a commutative pair
    and its swap count as one set), chosen by a stream keyed by the kind (and the world instance)."""
    pairs = _pairs(kind)
    sets = sorted({tuple(sorted(p)) if kind in ("sum", "product") else p for p in pairs})
    random.Random(f"rules-world-heldout:{kind}" if instance is None else
                  f"rules-world-heldout:{instance}:{kind}").shuffle(sets)
    held = set(sets[: len(sets) // 2])
    key = (lambda p: tuple(sorted(p))) if kind in ("sum", "product") else (lambda p: p)
    return {True: [p for p in pairs if key(p) in held], False: [p for p in pairs if key(p) not in held]}


@dataclass
class RuleWorldConfig:
    """Shape of the rule world.

    Attributes:
        document_kind_weights: how often each kind of fact appears in documents, besides the
            document source's ``required_kinds``.
        target_kind_weights: the kind mix of the target set and of the held-out test set.
        facts_per_document: facts mentioned in one document.
        num_options: options per question.
        column_answers: the Solver works two-digit sums column by column, writing the carry
            (the default); ``False`` answers them in one line like every other kind (the
            control in which a carry sum is one more fact to memorise). The base, the
            documents and the question sets of one run must agree on it.
    """

    document_kind_weights: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.25, "difference": 0.25, "product": 0.35, "carry": 0.15})
    target_kind_weights: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.15, "difference": 0.15, "carry": 0.70})
    facts_per_document: int = 4
    num_options: int = 4
    column_answers: bool = True

    def __post_init__(self) -> None:
        for name in ("document_kind_weights", "target_kind_weights"):
            check_weights(name, getattr(self, name), RULE_KINDS)
        if self.facts_per_document < 1 or self.num_options < 2:
            raise ValueError("facts_per_document must be at least 1 and num_options at least 2")


class RuleWorld(ArithmeticWorld):
    """Deterministic sampler of the rule world's facts, documents and questions."""

    name = "rules"
    kinds = RULE_KINDS
    # the anti-oracle asks the distractor, else an easy kind: never the target rule while the
    # document states anything else (every document states one carry sum, see configs/rules.yaml)
    scripted_kinds = {"oracle": ("carry",), "anti_oracle": ("product", "sum", "difference", "no_carry")}
    _fixed_halves: ClassVar[dict[str, dict[bool, list[tuple[int, int]]]]] = {
        kind: _split_pairs(kind) for kind in RULE_KINDS}

    def __init__(self, config: RuleWorldConfig | None = None, instance: int | None = None,
                 carry_right_operands: list[int] | None = None) -> None:
        """``instance``: the world instance whose operand split this is (``None``: the fixed one).
        ``carry_right_operands``: carry sums drawn from this world add only these one-digit
        numbers (a narrow question set, see :class:`RuleQuestions`; ``None``: any)."""
        self.config = config or RuleWorldConfig()
        self.instance = instance
        self._halves = (self._fixed_halves if instance is None else
                        {kind: _split_pairs(kind, instance) for kind in RULE_KINDS})
        if carry_right_operands is not None and not (carry_right_operands
                                                     and set(carry_right_operands) <= set(range(1, 10))):
            raise ValueError(f"carry_right_operands must list one-digit numbers from 1 to 9 (a carry needs one), got "
                             f"{carry_right_operands}")
        self.carry_right_operands = None if carry_right_operands is None else frozenset(carry_right_operands)

    def pairs(self, kind: str, heldout: bool | None = None) -> list[tuple[int, int]]:
        """``kind``'s operand pairs: the held-out half, the other half, or (``None``) all."""
        halves = self._halves[kind]
        return halves[True] + halves[False] if heldout is None else halves[heldout]

    def kind(self, fact: Fact) -> str:
        left, right = fact.left, fact.right
        if fact.kind == "sum" and 10 <= left <= 89 and right <= 9:
            return "carry" if left % 10 + right >= 10 else "no_carry"
        if left > 9 or right > 9 or (fact.kind == "difference" and left < right):
            return ""
        return fact.kind

    def fact(self, rng: random.Random, kind: str, split: str | None = None) -> Fact:
        """Documents and every split but ``heldout`` draw the kept half of the pairs, ``heldout``
        the held-out half; ``None`` draws from all of them."""
        pairs = self.pairs(kind, None if split is None else split == HELDOUT_SPLIT)
        if kind == "carry" and self.carry_right_operands is not None:
            pairs = [pair for pair in pairs if pair[1] in self.carry_right_operands]
        left, right = rng.choice(pairs)
        return Fact("sum" if kind in COLUMN_KINDS else kind, left, right)

    def worked_answer(self, fact: Fact) -> str:
        if self.kind(fact) in COLUMN_KINDS:
            return self._column_sum(fact, carried=fact.left % 10 + fact.right >= 10)
        return one_line_answer(fact, fact.value)

    def mistaken_answer(self, fact: Fact, asked: MCQuestion, rng: random.Random) -> str:
        """Column sums: the carry decision flipped (a forgotten carry, or one that was not due).
        One-digit kinds: another option's value, as if it were right."""
        if self.kind(fact) in COLUMN_KINDS:
            return self._column_sum(fact, carried=fact.left % 10 + fact.right < 10)
        return one_line_answer(fact, int(rng.choice([o for o in asked.options if o != str(fact.value)])))

    def _column_sum(self, fact: Fact, carried: bool) -> str:
        if self.config.column_answers:
            return column_answer(fact, carried)
        tens, ones = divmod(fact.left, 10)
        return one_line_answer(fact, (tens + carried) * 10 + (ones + fact.right) % 10)


def column_answer(fact: Fact, carried: bool) -> str:
    """A two-digit + one-digit sum worked column by column, carrying one ten or none.

    Right when ``carried`` says whether the ones digits sum to ten or more. Every step is a
    one-digit sum or a copy, and the carry is a single token (what is added to the tens), which is
    what lets a skill learned on some operands transfer to others. The carry is written once: a
    separate "carry 1" before the tens step would be a token the answer need not depend on, and
    RL would let it drift (it did: the final answers stayed right while it wandered over digits).
    """
    tens, ones = divmod(fact.left, 10)
    ones_sum, carry = ones + fact.right, int(carried)
    answer = f"{tens + carry}{ones_sum % 10}"
    return f" {ones} plus {fact.right} is {ones_sum}, {tens} plus {carry} is {tens + carry}, so \\boxed{{{answer}}}"


class RuleDocuments(ToyDocuments):
    """The rule world's documents: deterministic in ``seed`` and the position in the stream.

    Args:
        seed: seed of the document stream.
        world: the world's shape (kind mix of facts, facts per document...).
        required_kinds: kinds stated once in every document (the rest follow the world's kind
            mix); ``[carry]`` lets a Generator ask about the target rule in every document.
        world_seed: the world instance (see the module docstring): ``null`` is the fixed one;
            ``n`` keys the operand split and this stream by ``n`` too. The target and held-out
            sets of the run must name the same instance.
    """

    world_class = RuleWorld

    def __init__(self, seed: int = 0, world: RuleWorldConfig | None = None,
                 required_kinds: list[str] | None = None, world_seed: int | None = None) -> None:
        super().__init__(seed, world, required_kinds)
        self.world_seed = world_seed
        self.world = RuleWorld(world, world_seed)

    @property
    def stream(self) -> str:
        return _instance_stream(self.seed, self.world_seed)


class RuleQuestions(ToyQuestions):
    """Questions from the rule world's target distribution.

    ``split`` seeds an independent stream; the ``heldout`` split draws the held-out half of the
    operand pairs, every other split (the target set) the half that documents draw from.
    ``world_seed``: the world instance, as :class:`RuleDocuments`'s (the same for every source
    of a run). ``carry_right_operands``: a narrow set: its carry sums add only these one-digit
    numbers (e.g. ``[9]``: every carry question is ``ab + 9``), so it exercises part of the carry
    rule's variations; on the target set, with the held-out set left whole, it asks whether a
    curriculum generalises from a narrow target to the whole rule. ``null``: every operand.
    """

    world_class = RuleWorld

    def __init__(self, split: str = "target", size: int = 64, seed: int = 0,
                 world: RuleWorldConfig | None = None, world_seed: int | None = None,
                 carry_right_operands: list[int] | None = None) -> None:
        super().__init__(split, size, seed, world)
        self.world_seed = world_seed
        self.world = RuleWorld(world, world_seed, carry_right_operands)

    @property
    def stream(self) -> str:
        return _instance_stream(self.seed, self.world_seed)


def _instance_stream(seed: int, world_seed: int | None) -> str:
    """A rule-world source's stream key: its ``seed``, and the world instance when there is one
    (the fixed instance keeps the keys it always had, so its documents and sets are unchanged)."""
    return str(seed) if world_seed is None else f"{seed}@world{world_seed}"
