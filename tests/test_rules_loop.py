"""The rule world through `infuser fit`: scripted headroom arms, environment-checked golden answers,
exact evaluation (configs/rules.yaml on the bundled base, shrunk)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from infuser.cli import main
from infuser.config import ConfigurationError, LoopConfig
from infuser.data.documents import JsonlDocuments
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import parse_question, write_question
from infuser.models import ModelConfig, load_causal_lm, load_tokenizer
from infuser.preflight import check_documents
from infuser.toy.rules import RuleDocuments, RuleQuestions
from infuser.toy.sources import ToyDocuments
from infuser.toy.world import facts_in

ROOT = Path(__file__).resolve().parents[1]


def _fit(run_dir: Path, *extra: str) -> int:
    return main(["fit", "--config", "configs/rules.yaml", "--loop.iterations=1", "--loop.documents_per_iteration=4",
                 "--loop.questions_per_document=2", "--loop.answers_per_question=2",
                 "--loop.target_answers_per_question=2", "--loop.eval_samples=1", "--target_set.init_args.size=6",
                 "--heldout_set.init_args.size=8", f"--run_dir={run_dir}", *extra])


def _questions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "questions" / "iter_00001.jsonl").read_text().splitlines()]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_configuration_refusals():
    with pytest.raises(ValueError, match="loop.scripted_drafts: oracle drafts .* set loop.freeze_generator: true"):
        LoopConfig(scripted_drafts="oracle")
    with pytest.raises(ConfigurationError, match="the toy world defines no anti_oracle arm"):
        check_documents(LoopConfig(scripted_drafts="anti_oracle", freeze_generator=True), ToyDocuments())
    with pytest.raises(ConfigurationError, match="environment_checked needs documents .* JsonlDocuments cannot"):
        check_documents(LoopConfig(golden_answers="environment_checked"), JsonlDocuments(str(ROOT / "README.md")))
    check_documents(LoopConfig(scripted_drafts="anti_oracle", freeze_generator=True), RuleDocuments())


@pytest.mark.slow
@pytest.mark.parametrize("arm, kind", [("oracle", "carry"), ("anti_oracle", "product")])
def test_scripted_arms_ask_their_kind_and_train_the_solver_only(arm, kind, tmp_path, monkeypatch):
    """Documents state a carry in every one (required_kinds) and products in most: the oracle asks
    the carry every time, the anti-oracle a product whenever the document states one."""
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / arm
    assert _fit(run_dir, f"--loop.scripted_drafts={arm}", "--loop.freeze_generator=true",
                "--loop.golden_answers=environment_checked") == 0
    rows = _questions(run_dir)
    assert rows and all(row["valid"] for row in rows)  # scripted golden answers are right by construction
    documents = {d.id: d for d in RuleDocuments(seed=0, required_kinds=["carry"]).take(4)}
    world = RuleDocuments().world
    for row in rows:
        stated = {world.kind(fact) for fact in facts_in(documents[row["document_id"]].text)}
        assert row["kind"] == kind or kind not in stated
    metrics = _metrics(run_dir)
    assert not any(name.startswith("generator/") and "loss" in name and value for row in metrics
                   for name, value in row.items())  # the Generator never trained
    assert sorted(p.name for p in (run_dir / "questions").iterdir()) == ["iter_00001.jsonl"]


@pytest.mark.slow
def test_environment_checked_golden_answers_never_reach_the_solver(tmp_path, monkeypatch):
    """A scripted Generator that writes a wrong golden answer on every other document: those drafts
    are invalid (wrong_golden) and unanswered; as written, the same drafts are answered."""
    monkeypatch.chdir(ROOT)
    honest = RuleDocuments.scripted_draft

    def sometimes_wrong(self, document, kinds, rng):
        text = honest(self, document, kinds, rng)
        if int(document.id.rsplit("-", 1)[1]) % 2:
            return text
        question = parse_question(text)
        return write_question(type(question)(question.question, question.options, (question.answer_index + 1) % 4))

    monkeypatch.setattr(RuleDocuments, "scripted_draft", sometimes_wrong)
    checked, written = tmp_path / "checked", tmp_path / "written"
    scripted = ("--loop.scripted_drafts=oracle", "--loop.freeze_generator=true")
    assert _fit(checked, *scripted, "--loop.golden_answers=environment_checked") == 0
    assert _fit(written, *scripted) == 0
    for row in _questions(checked):
        wrong = int(row["document_id"].rsplit("-", 1)[1]) % 2 == 0
        assert row["valid"] is not wrong and (row["reason"] == "wrong_golden") is wrong
        assert (row["pass_rate"] is None) is wrong
    assert all(row["valid"] and row["pass_rate"] is not None for row in _questions(written))
    assert float(_metrics(checked)[-1]["generator/invalid/wrong_golden"]) == 0.5


@pytest.mark.slow
def test_exact_evaluation_is_the_probability_of_the_canonical_answers(tmp_path, monkeypatch):
    """summary.json's held-out exact figure at the start is the base's mean probability of the
    canonical answers ending with end-of-text, recomputed here with one unbatched float64 forward per question.

    The run scores in float32 (logits divided and normalised in float32, rows padded in batches):
    a token's log-prob carries float32 roundings (2^-24 relative) of the chosen logit and of the
    log-normaliser, the sum inside the logsumexp adding up to log2(vocabulary) of them. That bound,
    summed over a completion's tokens, bounds its log-probability error e, hence its probability's
    relative error by exp(e) - 1.
    """
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    assert _fit(run_dir, "--loop.eval_every=1") == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = _metrics(run_dir)
    assert {"eval/target_exact", "eval/heldout_exact"} <= set(metrics[0])
    assert float(metrics[0]["eval/heldout_exact"]) == summary["heldout_exact_start"]
    source = RuleQuestions("heldout", 8)
    config = ModelConfig(name_or_path="builtin:toy-rules")
    tokenizer, model = load_tokenizer(config), load_causal_lm(config).double().eval()
    probabilities, bounds = [], []
    with torch.no_grad():
        for question in source.load():
            prompt = tokenizer(PromptTemplates().for_solver(question), add_special_tokens=False)["input_ids"]
            answer = tokenizer(source.canonical_completion(question), add_special_tokens=False)["input_ids"]
            answer += [tokenizer.eos_token_id]  # a sample that goes on after the answer is not the answer
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]  # eval T = 1
            chosen, normaliser = logits.gather(-1, torch.tensor(answer)[:, None])[:, 0], logits.logsumexp(-1)
            probability = math.exp(float((chosen - normaliser).sum()))
            roundings = math.ceil(math.log2(logits.size(-1))) + 2
            error = 2.0**-24 * roundings * float((chosen.abs() + normaliser.abs()).sum())
            probabilities.append(probability)
            bounds.append(probability * math.expm1(error))
    expected = sum(probabilities) / len(probabilities)
    assert abs(summary["heldout_exact_start"] - expected) <= sum(bounds) / len(bounds)
    for key in ("target_exact_start", "target_exact_end", "heldout_exact_end"):
        assert 0.0 <= summary[key] <= 1.0
