"""The rule world: determinism, kind shares, held-out disjointness, scripted drafts, golden answers,
canonical completions, exact probabilities, and the bundled base's pass rates."""

from __future__ import annotations

import math
import random

import pytest
import torch

from infuser.data.documents import Document, SyntheticDocuments
from infuser.data.question_sets import CanonicalAnswers, JsonlQuestions
from infuser.data.questions import MCQuestion, parse_question
from infuser.models import ModelConfig, load_causal_lm, load_tokenizer, resolve_path
from infuser.registry import RegistryError
from infuser.rollout.scoring import exact_probabilities
from infuser.toy.base_model import _bundled_matches, bundled_dir
from infuser.toy.builtin import BUNDLED_RECIPES
from infuser.toy.rules import (
    RULE_KINDS,
    RuleDocuments,
    RuleQuestions,
    RuleWorld,
    RuleWorldConfig,
    column_answer,
)
from infuser.toy.sources import ToyDocuments, ToyQuestions
from infuser.toy.world import Fact, fact_asked, facts_in

WORLD = RuleWorld()


def _operands(fact: Fact) -> tuple[str, int, int]:
    """The operation and operand set of a fact (a commutative pair and its swap are one set)."""
    left, right = sorted((fact.left, fact.right)) if fact.kind in ("sum", "product") else (fact.left, fact.right)
    return fact.kind, left, right


def test_documents_are_deterministic_resumable_and_always_offer_the_target_rule():
    first = RuleDocuments(seed=3, required_kinds=["carry"])
    taken = first.take(3) + first.take(2)
    resumed = RuleDocuments(seed=3, required_kinds=["carry"])
    resumed.load_state_dict({"position": 3})
    assert [d.text for d in resumed.take(2)] == [d.text for d in taken[3:]]
    assert [d.text for d in RuleDocuments(seed=4).take(5)] != [d.text for d in taken]
    assert all(d.id.startswith("rules-") for d in taken)
    for document in RuleDocuments(seed=0, required_kinds=["carry"]).take(200):
        facts = facts_in(document.text)
        assert len(facts) == WORLD.config.facts_per_document
        assert "carry" in {WORLD.kind(f) for f in facts}
    with pytest.raises(ValueError, match="unknown kinds"):
        RuleDocuments(required_kinds=["carry", "division"])


def test_kind_shares_follow_the_configuration():
    """Counts over n draws are binomial: each share must lie within 4 standard errors of its weight."""
    n = 3000
    questions = RuleQuestions("target", n, seed=1).load()
    weights = WORLD.config.target_kind_weights
    for kind in RULE_KINDS:
        share = sum(q.kind == kind for q in questions) / n
        expected = weights.get(kind, 0.0)
        assert abs(share - expected) <= 4 * math.sqrt(expected * (1 - expected) / n), kind
    facts = [f for d in RuleDocuments(seed=0).take(n // 4) for f in facts_in(d.text)]
    weights = WORLD.config.document_kind_weights
    for kind in RULE_KINDS:
        share = sum(WORLD.kind(f) == kind for f in facts) / len(facts)
        expected = weights.get(kind, 0.0) / sum(weights.values())
        assert abs(share - expected) <= 4 * math.sqrt(expected * (1 - expected) / len(facts)), kind


def test_heldout_operands_never_appear_in_documents_or_the_target_set():
    for kind in RULE_KINDS:
        held, kept = RuleWorld.pairs(kind, True), RuleWorld.pairs(kind, False)
        assert sorted(held + kept) == sorted(RuleWorld.pairs(kind)) and not set(held) & set(kept)
        assert abs(len(held) - len(kept)) <= 0.1 * len(RuleWorld.pairs(kind)), kind
    heldout = {_operands(_question_fact(q)) for q in RuleQuestions("heldout", 600, seed=0).load()}
    seen = {_operands(_question_fact(q)) for q in RuleQuestions("target", 600, seed=0).load()}
    seen |= {_operands(f) for d in RuleDocuments(seed=0, required_kinds=["carry"]).take(2000) for f in facts_in(d.text)}
    assert heldout and seen and not heldout & seen


def _question_fact(question: MCQuestion) -> Fact:
    fact = fact_asked(question.question)
    assert fact is not None
    return fact


@pytest.mark.parametrize("source", [RuleDocuments(seed=2, required_kinds=["carry"]),
                                    ToyDocuments(seed=2, required_kinds=["product"])], ids=["rules", "aligned"])
def test_scripted_drafts_parse_with_right_golden_answers(source):
    rng = random.Random(0)
    target = "carry" if isinstance(source, RuleDocuments) else "product"
    for document in source.take(50):
        for kinds in ((target,), ("product",), ("no_carry", "difference"), ()):
            text = source.scripted_draft(document, kinds, rng)
            question = parse_question(text)
            assert isinstance(question, MCQuestion), text
            assert source.golden_is_correct(question) is True
            stated = {source.question_kind(MCQuestion(f.question_text(), ("0", "1"), 0))
                      for f in facts_in(document.text)}
            wanted = next((kind for kind in kinds if kind in stated), None)
            if wanted is not None:  # the first stated kind of the list, else any fact of the document
                assert source.question_kind(question) == wanted
            assert (question.question.split("of ")[1].split(" and ")[0] + " ") in document.text.replace(".", " ")


def test_scripted_draft_needs_a_fact():
    with pytest.raises(ValueError, match="states no fact"):
        RuleDocuments().scripted_draft(Document("x", "It rained all afternoon."), ("carry",), random.Random(0))


def test_scripted_arms_of_each_world():
    rules, aligned = RuleDocuments(), ToyDocuments()
    assert isinstance(rules, SyntheticDocuments) and isinstance(aligned, SyntheticDocuments)
    assert rules.scripted_kinds("oracle") == ("carry",) and rules.scripted_kinds("anti_oracle")[0] == "product"
    assert "carry" not in rules.scripted_kinds("anti_oracle")
    assert aligned.scripted_kinds("oracle") == ("product",)
    with pytest.raises(ValueError, match="the toy world defines no anti_oracle arm"):
        aligned.scripted_kinds("anti_oracle")


def test_golden_check_recomputes_any_question_worded_as_the_world_words_them():
    source = RuleDocuments()
    rng = random.Random(0)
    for _ in range(300):
        kind = rng.choice(["sum", "difference", "product"])
        left, right = rng.randint(0, 999), rng.randint(0, 999)  # not only the world's ranges
        fact = Fact(kind, left, right)
        options = tuple(str(fact.value + offset) for offset in (-2, -1, 0, 1))
        right_golden = MCQuestion(fact.question_text(), options, 2).shuffled(rng)
        wrong_golden = MCQuestion(fact.question_text(), options, rng.choice([0, 1, 3]))
        assert source.golden_is_correct(right_golden) is True
        assert source.golden_is_correct(wrong_golden) is False
    assert source.golden_is_correct(MCQuestion("Who wrote it?", ("a", "b"), 0)) is None


def test_kinds_of_questions():
    cases = {"What is the sum of 27 and 5?": "carry", "What is the sum of 23 and 5?": "no_carry",
             "What is the sum of 7 and 5?": "sum", "What is the difference of 7 and 5?": "difference",
             "What is the difference of 5 and 7?": "", "What is the product of 7 and 5?": "product",
             "What is the sum of 95 and 7?": "", "What is the product of 12 and 5?": "", "Why?": ""}
    for text, kind in cases.items():
        assert WORLD.kind_asked(text) == kind, text


@pytest.mark.parametrize("source", [RuleQuestions("heldout", 300), ToyQuestions("heldout", 100)],
                         ids=["rules", "aligned"])
def test_canonical_completions_answer_every_question(source):
    for question in source.load():
        completion = source.canonical_completion(question)
        assert question.is_answered_by(completion), (question, completion)
    with pytest.raises(ValueError, match="not a question"):
        source.canonical_completion(MCQuestion("Who wrote it?", ("a", "b"), 0))


def test_only_synthetic_question_sets_have_canonical_answers(tmp_path):
    assert isinstance(RuleQuestions(), CanonicalAnswers) and isinstance(ToyQuestions(), CanonicalAnswers)
    assert not isinstance(JsonlQuestions(str(tmp_path / "q.jsonl")), CanonicalAnswers)


def test_column_answers_carry_when_the_ones_sum_reaches_ten():
    assert column_answer(Fact("sum", 27, 5), carried=True) == " 7 plus 5 is 12, 2 plus 1 is 3, so \\boxed{32}"
    assert WORLD.worked_answer(Fact("sum", 23, 5)) == " 3 plus 5 is 8, 2 plus 0 is 2, so \\boxed{28}"
    forgotten = WORLD.mistaken_answer(Fact("sum", 27, 5), MCQuestion("q", ("31", "32"), 1), random.Random(0))
    assert forgotten == " 7 plus 5 is 12, 2 plus 0 is 2, so \\boxed{22}"


def test_exact_probabilities_equal_a_direct_computation(tiny_model_dir):
    """Batched, padded scoring against one unpadded forward per row of the model in float64, each
    completion ending with end-of-text.

    Padding is masked out exactly and the forward runs in float64, but the scorer (the training
    loss's log-prob pass) divides and normalises the logits in float32. A token's log-prob
    ``logit - logsumexp`` then carries float32 roundings (2^-24 relative) of both terms, the sum
    inside the logsumexp adding up to log2(vocabulary) of them: that bound, summed over the
    completion's tokens, is the tolerance.
    """
    config = ModelConfig(name_or_path=str(tiny_model_dir))
    tokenizer, model = load_tokenizer(config), load_causal_lm(config).double()
    questions = ToyQuestions("exact", 5, seed=0).load()
    prompts = [f"Question: {q.question}\nAnswer:" for q in questions] + ["Document: 1 plus 1 is 2.\n"]
    completions = [ToyQuestions().canonical_completion(q) for q in questions] + [" Question"]
    temperature = 0.7
    batched = exact_probabilities(model, tokenizer, prompts, completions, temperature=temperature, batch_size=4)
    assert batched.dtype == torch.float64 and batched.shape == (len(prompts),)
    with torch.no_grad():
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            logits = model(torch.tensor([prompt_ids + completion_ids])).logits[0, len(prompt_ids) - 1 : -1]
            logits = logits / temperature
            chosen, normaliser = logits.gather(-1, torch.tensor(completion_ids)[:, None])[:, 0], logits.logsumexp(-1)
            direct = float((chosen - normaliser).sum())
            roundings = math.ceil(math.log2(logits.size(-1))) + 2
            tolerance = 2.0**-24 * roundings * float((chosen.abs() + normaliser.abs()).sum())
            assert abs(math.log(batched[row]) - direct) <= tolerance
    assert model.training  # restored
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        exact_probabilities(model, tokenizer, prompts[:2], completions[:1])


def test_builtin_names_match_their_bundles():
    for name, recipe in BUNDLED_RECIPES.items():
        assert _bundled_matches(recipe()), f"{name}: {bundled_dir(recipe())} was not built from its recipe"


def test_builtin_names_resolve_through_the_entry_point_group():
    for name, recipe in BUNDLED_RECIPES.items():
        assert resolve_path(f"builtin:{name}") == str(bundled_dir(recipe()))
    assert resolve_path("some/local/dir") == "some/local/dir"
    with pytest.raises(RegistryError, match="no builtin_model component named 'nope'"):
        resolve_path("builtin:nope")


@pytest.fixture(scope="module")
def rules_base():
    config = ModelConfig(name_or_path="builtin:toy-rules")
    return load_causal_lm(config), load_tokenizer(config)


def test_bundled_rules_base_has_the_designed_pass_rates(rules_base):
    """Exact probabilities of the canonical answers (T=1) averaged over 150 held-out questions per
    kind. They are deterministic up to float summation order (~1e-6), so the bands are the
    design's, not statistical allowances."""
    from infuser.data.prompts import PromptTemplates

    model, tokenizer = rules_base
    templates = PromptTemplates()
    bands = {"sum": (0.85, 1.0), "difference": (0.85, 1.0), "product": (0.35, 0.65), "carry": (0.12, 0.25),
             "no_carry": (0.85, 1.0)}
    for kind, (low, high) in bands.items():
        world = RuleWorld(RuleWorldConfig(target_kind_weights={kind: 1.0}))
        questions = world.question_set("heldout", 150, seed=0)
        probabilities = exact_probabilities(model, tokenizer, [templates.for_solver(q) for q in questions],
                                            [world.canonical_completion(q) for q in questions], temperature=1.0)
        assert low <= float(probabilities.mean()) <= high, (kind, float(probabilities.mean()))
