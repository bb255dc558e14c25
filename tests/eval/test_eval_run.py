"""``evaluate``: scoring predictions, the jsonargparse signature, errors, exclusion, a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_paths import OLYMPIAD_MINI, SUPERGPQA_MINI

from infuser.eval.generation import EvalModelConfig, EvalSamplingConfig
from infuser.eval.items import BenchmarkConfig
from infuser.eval.run import evaluate, main
from infuser.eval.score import JudgeConfig
from infuser.eval.sources import DatasetError, RowError
from infuser.eval.target_set import build_target_set

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
JUDGE = JudgeConfig(item_timeout_s=10.0)

OLYMPIAD_OUTPUTS = {  # id -> k=2 samples
    "9001": ["So the final answer is $\\boxed{12}$.", "So the final answer is $\\boxed{13}$."],
    "9002": ["So the final answer is \\boxed{3}, \\boxed{2}.", "So the final answer is $\\boxed{2,3}$."],
    "9003": ["So the final answer is $\\boxed{f(x)=2x}$.", "I give up."],
    "9006": ["So the final answer is $\\boxed{[1,3)}$.", "So the final answer is $\\boxed{[1,3]}$."],
    "9011": ["So the final answer is $\\boxed{19.62}$ m.", "So the final answer is $\\boxed{19.62 \\text{ m}}$."],
}
GPQA_OUTPUTS = {"t-001": "Answer: B", "t-002": "The answer is (A).", "t-003": "\\boxed{D}", "t-004": "no idea"}


def _write_predictions(path: Path) -> Path:
    lines = []
    for key, samples in OLYMPIAD_OUTPUTS.items():
        for i, text in enumerate(samples):
            lines.append({"id": int(key), "output": text, "sample": i, "benchmark": "olympiadbench"})
    for key, text in GPQA_OUTPUTS.items():
        lines.append({"id": key, "output": text})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _benchmarks(**gpqa: object) -> list[BenchmarkConfig]:
    return [
        BenchmarkConfig(name="olympiadbench", path=str(OLYMPIAD_MINI)),
        BenchmarkConfig(name="supergpqa", path=str(SUPERGPQA_MINI), **gpqa),  # type: ignore[arg-type]
    ]


def test_scoring_predictions_writes_all_results(tmp_path: Path) -> None:
    preds = _write_predictions(tmp_path / "preds.jsonl")
    results = evaluate(_benchmarks(), predictions=str(preds), judge=JUDGE, output_dir=str(tmp_path / "out"))

    olympiad = results.benchmark("olympiadbench")
    # avg@2 per answered item: 9001 .5, 9002 1, 9003 .5, 9006 .5, 9011 1; 11 items unanswered (0)
    assert olympiad.items == 16 and olympiad.missing_predictions == 11
    assert olympiad.accuracy == pytest.approx(3.5 / 16)
    assert olympiad.samples_per_item == (1, 2)
    assert set(olympiad.breakdowns) == {"subset", "answer_type"}
    assert olympiad.breakdowns["answer_type"].groups["Interval"].accuracy == pytest.approx(0.25)

    gpqa = results.benchmark("supergpqa")
    assert gpqa.items == 12 and gpqa.missing_predictions == 8
    assert gpqa.correct_samples == 2  # t-001 B and t-002 A; t-003 is C, t-004 unanswered
    assert set(gpqa.breakdowns) == {"difficulty", "discipline", "field", "subfield"}
    assert gpqa.breakdowns["difficulty"].groups["easy"].items == 5
    assert gpqa.misses == 1 + 8

    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["protocol"]["mode"] == "predictions" and data["protocol"]["model"] is None
    assert len(data["protocol"]["predictions"]["sha256"]) == 64
    assert data["protocol"]["sampling"]["num_samples"] == 1 and data["protocol"]["judge"]["item_timeout_s"] == 10.0
    assert data["benchmarks"]["olympiadbench"]["dataset"]["files"][0]["path"] == str(OLYMPIAD_MINI)
    assert data["harness_version"].startswith("infuser-eval/")
    assert {"accuracy", "miss_rate", "breakdowns", "prompt_variant", "excluded", "skipped_rows"} <= set(data["benchmarks"]["supergpqa"])
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    first = next(i for i in items if i["id"] == "9001" and i["sample"] == 0)
    assert first["correct"] and first["extracted"] == "12" and first["gold"] == "12" and first["reason"] == "exact"
    assert "So the final answer is" in first["prompt"]
    unanswered = next(i for i in items if i["id"] == "t-004")
    assert unanswered["missed"] and not unanswered["correct"] and unanswered["reason"] == "no_answer"
    assert "| olympiadbench | official | 16 |" in (tmp_path / "out" / "results.md").read_text()


def test_cli_signature_parses_config_and_predictions_flag(tmp_path: Path) -> None:
    preds = _write_predictions(tmp_path / "preds.jsonl")
    config = tmp_path / "eval.yaml"
    config.write_text(
        "benchmarks:\n"
        f"  - name: olympiadbench\n    path: {OLYMPIAD_MINI}\n    prompt: plain\n    limit: 3\n"
        f"  - name: supergpqa\n    path: {SUPERGPQA_MINI}\n    prompt: boxed\n"
        "sampling:\n  temperature: 0.7\n  num_samples: 2\n"
        "judge:\n  item_timeout_s: 10\n"
        f"output_dir: {tmp_path / 'cli_out'}\nseed: 3\n",
        encoding="utf-8",
    )
    from jsonargparse import CLI

    results = CLI(evaluate, args=["--config", str(config), "--predictions", str(preds)], as_positional=False)
    assert results.benchmark("olympiadbench").items == 3
    assert results.benchmark("supergpqa").prompt_variant == "boxed"
    protocol = json.loads((tmp_path / "cli_out" / "results.json").read_text())["protocol"]
    assert protocol["seed"] == 3 and protocol["sampling"]["temperature"] == 0.7
    assert main(["--config", str(config), "--predictions", str(preds), "--output_dir", str(tmp_path / "m")]).benchmarks


@pytest.mark.parametrize("name", ["eval_model.yaml", "eval_predictions.yaml"])
def test_shipped_configs_parse(name: str) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(evaluate)
    args = ["--config", str(CONFIGS / name)]
    if name == "eval_predictions.yaml":
        args += ["--predictions", "preds.jsonl"]
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(parser.parse_args(args))
    assert init.benchmarks and all(isinstance(b, BenchmarkConfig) for b in init.benchmarks)
    assert isinstance(init.sampling, EvalSamplingConfig)


def test_argument_errors(tmp_path: Path) -> None:
    preds = _write_predictions(tmp_path / "preds.jsonl")
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(_benchmarks(), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(_benchmarks(), model=EvalModelConfig("x"), predictions=str(preds), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unique"):
        evaluate(_benchmarks() + _benchmarks()[:1], predictions=str(preds), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown prompt"):
        evaluate([BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI), prompt="official")], predictions=str(preds))
    with pytest.raises(ValueError, match="temperature"):
        EvalSamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="num_samples"):
        EvalSamplingConfig(num_samples=0)


def test_eval_sampling_is_the_engines_with_greedy_spelled_temperature_zero() -> None:
    with pytest.raises(ValueError, match="top_p"):  # the engine's own check
        EvalSamplingConfig(top_p=0)
    greedy = EvalSamplingConfig(max_new_tokens=7).engine(batch_size=3)
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.batch_size) == (False, 7, 3)
    sampled = EvalSamplingConfig(temperature=0.6, top_k=20).engine(batch_size=1)
    assert (sampled.do_sample, sampled.temperature, sampled.top_k) == (True, 0.6, 20)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"output": "x"}, "id"),
        ({"id": "t-001"}, "output"),
        ({"id": "t-001", "output": 3}, "output"),
        ({"id": "nope", "output": "x"}, "id"),
        ({"id": "t-001", "output": "x", "benchmark": "mmlu"}, "benchmark"),
        ({"id": "t-001", "output": "x", "sample": -1}, "sample"),
    ],
)
def test_bad_prediction_lines_name_the_line_and_field(tmp_path: Path, line: dict[str, object], field: str) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps({"id": "t-002", "output": "Answer: A"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(RowError) as info:
        evaluate([BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI))], predictions=str(path), output_dir=str(tmp_path))
    assert (info.value.row, info.value.field) == (2, field) and "line 2" in str(info.value)


def test_ambiguous_ids_need_a_benchmark_field(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps({"id": "t-001", "output": "Answer: B"}) + "\n")
    twice = [BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI)),
             BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI), prompt="boxed", label="supergpqa_boxed")]
    with pytest.raises(RowError, match="say which"):
        evaluate(twice, predictions=str(path), output_dir=str(tmp_path))
    path.write_text(json.dumps({"id": "t-001", "output": "Answer: B", "benchmark": "supergpqa_boxed"}) + "\n")
    results = evaluate(twice, predictions=str(path), judge=JUDGE, output_dir=str(tmp_path))
    assert results.benchmark("supergpqa_boxed").correct_samples == 1
    assert results.benchmark("supergpqa").correct_samples == 0


def test_target_set_is_excluded_and_recorded(tmp_path: Path) -> None:
    target = tmp_path / "target.jsonl"
    manifest = build_target_set(str(target), path=str(SUPERGPQA_MINI), n=3, seed=0)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": f"t-{i:03d}", "output": "Answer: A"}) + "\n" for i in range(1, 13)))
    results = evaluate(
        [BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI), exclude=[str(target)])],
        predictions=str(preds), judge=JUDGE, output_dir=str(tmp_path / "out"),
    )
    summary = results.benchmark("supergpqa")
    assert summary.items == 9 and summary.missing_predictions == 0
    assert summary.excluded is not None and summary.excluded["removed"] == 3
    assert summary.excluded["files"][0]["sha256"] == manifest.sha256
    scored = {json.loads(line)["id"] for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()}
    assert not scored & set(manifest.ids)
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["protocol"]["predictions"]["ignored_lines"] == 3


def test_skip_bad_rows_is_counted_in_results(tmp_path: Path) -> None:
    rows = SUPERGPQA_MINI.read_text().splitlines()
    broken = json.loads(rows[1])
    broken["answer_letter"] = "Z"
    data_file = tmp_path / "gpqa.jsonl"
    data_file.write_text("\n".join([rows[0], json.dumps(broken), *rows[2:]]) + "\n")
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "t-001", "output": "Answer: B"}) + "\n")
    with pytest.raises(RowError, match="line 2: field 'answer_letter'"):
        evaluate([BenchmarkConfig("supergpqa", path=str(data_file))], predictions=str(preds), output_dir=str(tmp_path))
    results = evaluate([BenchmarkConfig("supergpqa", path=str(data_file), on_bad_row="skip")],
                       predictions=str(preds), judge=JUDGE, output_dir=str(tmp_path / "out"))
    summary = results.benchmark("supergpqa")
    assert summary.skipped_rows == 1 and "line 2" in summary.skipped_examples[0] and summary.items == 11


def test_empty_predictions_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text("\n")
    with pytest.raises(DatasetError, match="no predictions"):
        evaluate([BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI))], predictions=str(path), output_dir=str(tmp_path))


# -- model-backed evaluation with a tiny local model (never downloads) -----------------------------


def _tiny_model(directory: Path) -> Path:
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [OLYMPIAD_MINI.read_text(), SUPERGPQA_MINI.read_text(), "So the final answer is \\boxed{12}. Answer: B"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    Qwen3ForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_model_backed_evaluation_with_a_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("infuser.rollout.engine")
    model_dir = _tiny_model(tmp_path / "tiny")
    sampling = EvalSamplingConfig(temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=6, num_samples=2)
    benchmarks = [  # short prompts keep the CPU forward passes cheap
        BenchmarkConfig("olympiadbench", path=str(OLYMPIAD_MINI), limit=2, prompt="plain"),
        BenchmarkConfig("supergpqa", path=str(SUPERGPQA_MINI), limit=2, prompt="boxed"),
    ]
    model = EvalModelConfig(str(model_dir), batch_size=2, device="cpu", dtype="float32")
    results = evaluate(benchmarks, model=model, sampling=sampling, judge=JUDGE, output_dir=str(tmp_path / "out"), seed=5)
    for name in ("olympiadbench", "supergpqa"):
        summary = results.benchmark(name)
        assert summary.items == 2 and summary.samples == 4 and summary.samples_per_item == (2, 2)
        assert summary.missing_predictions == 0
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 8
    assert all(i["prompt"].startswith("<|im_start|>user\n") and i["prompt"].endswith("<|im_start|>assistant\n") for i in items)
    protocol = json.loads((tmp_path / "out" / "results.json").read_text())["protocol"]
    assert protocol["mode"] == "model" and protocol["model"]["name_or_path"] == str(model_dir)
    assert protocol["sampling"] == {"temperature": 0.8, "top_p": 0.95, "top_k": 50, "max_new_tokens": 6, "num_samples": 2}

    evaluate(benchmarks, model=model, sampling=sampling, judge=JUDGE, output_dir=str(tmp_path / "again"), seed=5)
    second = [json.loads(line)["output"] for line in (tmp_path / "again" / "items.jsonl").read_text().splitlines()]
    assert second == [i["output"] for i in items]  # seeded

    greedy = EvalSamplingConfig(temperature=0.0, max_new_tokens=4, num_samples=1)
    plain = EvalModelConfig(str(model_dir), batch_size=4, device="cpu", chat_template=False)
    official = [BenchmarkConfig("olympiadbench", path=str(OLYMPIAD_MINI), limit=1)]
    evaluate(official, model=plain, sampling=greedy, judge=JUDGE, output_dir=str(tmp_path / "greedy"))
    first = json.loads((tmp_path / "greedy" / "items.jsonl").read_text().splitlines()[0])
    assert first["prompt"].startswith("The problem below comes from")


def test_a_lone_surrogate_is_stored_escaped_and_every_file_is_written(tmp_path: Path) -> None:
    """Model output may hold text UTF-8 cannot encode; it must not cut ``items.jsonl`` short."""
    preds = tmp_path / "preds.jsonl"
    lines = [
        {"id": 9001, "output": "\ud800 So the final answer is $\\boxed{12}$.", "benchmark": "olympiadbench"},
        {"id": "t-001", "output": "Answer: B \udfff"},
    ]
    preds.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    evaluate(_benchmarks(), predictions=str(preds), judge=JUDGE, output_dir=str(out))
    raw = (out / "items.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in raw]
    assert len(items) == 16 + 12  # every item, answered or not
    olympiad = next(i for i in items if i["id"] == "9001")
    assert olympiad["output"].startswith("\ud800") and olympiad["correct"]
    assert "\\ud800" in next(line for line in raw if '"9001"' in line)
    assert next(i for i in items if i["id"] == "t-001")["correct"]
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["overall"]["samples"] == 28
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "results.json", "results.md"]


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preds = _write_predictions(tmp_path / "preds.jsonl")
    out = tmp_path / "out"

    def disk_full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)  # items.jsonl is already written by then
    with pytest.raises(OSError, match="No space"):
        evaluate(_benchmarks(), predictions=str(preds), judge=JUDGE, output_dir=str(out))
    assert list(out.iterdir()) == []
