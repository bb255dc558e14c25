"""``infuser eval``: run a model (or score saved outputs) on the bundled benchmarks.

:func:`evaluate` is the entry point; its parameters are plain typed values and dataclasses so
that ``jsonargparse`` can expose it as ``infuser eval --config FILE.yaml [--predictions P.jsonl]``.

Two modes:

* **model**: prompts are built per benchmark, wrapped in the chat template when asked for, and
  sampled ``k`` times each through :func:`infuser.rollout.engine.generate` (model loading and
  generation live in :func:`generate_outputs`, the only place that imports them);
* **predictions**: a JSONL file of ``{"id", "output"}`` lines (optional ``benchmark``,
  ``sample``, ``prompt``) is scored against the dataset; several lines with one id are its k
  samples.

Both write ``results.json``, ``results.md`` and ``items.jsonl`` (see :mod:`infuser.eval.report`).
"""

from __future__ import annotations

import json
import platform
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infuser.config import BenchmarkConfig, EvalSamplingConfig
from infuser.data.chat import render_prompt
from infuser.eval.data import (
    OLYMPIAD_DEFAULT_SUBSETS,
    OLYMPIAD_HF_ID,
    OLYMPIAD_REVISION,
    SUPERGPQA_HF_ID,
    DatasetError,
    OlympiadRow,
    RowError,
    SuperGPQARow,
    load_olympiadbench,
    load_supergpqa,
    read_records,
    sha256_file,
)
from infuser.eval.prompts import (
    OLYMPIAD_PROMPTS,
    SUPERGPQA_PROMPTS,
    olympiad_prompt,
    supergpqa_prompt,
)
from infuser.eval.report import BenchmarkSummary, EvalResults, ItemRecord, summarize, write_results
from infuser.eval.score import ItemScore, JudgeConfig, Scorer
from infuser.eval.target_set import load_exclusion

_PROMPTS = {"olympiadbench": OLYMPIAD_PROMPTS, "supergpqa": SUPERGPQA_PROMPTS}
_BREAKDOWNS = {
    "olympiadbench": ("subset", "answer_type"),
    "supergpqa": ("difficulty", "discipline", "field", "subfield"),
}


@dataclass
class EvalModelConfig:
    """The model to evaluate.

    Attributes:
        name_or_path: Hub id, local ``save_pretrained`` directory (e.g. a model ``fit``
            exported), or ``builtin:toy``.
        revision: pinned Hub revision of the model.
        adapter: optional LoRA adapter directory (PEFT) applied on top.
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        system_prompt: optional system turn.
        dtype: ``auto`` (bfloat16 on CUDA when supported, else float32), ``float32``,
            ``bfloat16`` or ``float16``.
        device: ``cuda``, ``cpu``... (default: CUDA when available).
        batch_size: prompts per generation call (each expanded to k rows).
    """

    name_or_path: str
    revision: str | None = None
    adapter: str | None = None
    chat_template: bool = True
    system_prompt: str | None = None
    dtype: str = "auto"
    device: str | None = None
    batch_size: int = 16


@dataclass(frozen=True)
class EvalItem:
    """One benchmark item ready to run: its key, prompt, gold and group labels."""

    benchmark: str
    key: str
    prompt: str
    gold: str
    groups: dict[str, str]
    row: OlympiadRow | SuperGPQARow


@dataclass
class LoadedBenchmark:
    """A benchmark entry after loading, exclusion and limiting."""

    config: BenchmarkConfig
    items: list[EvalItem]
    all_keys: set[str]
    dataset: dict[str, Any]
    skipped: list[RowError]
    excluded: dict[str, Any] | None


# -- loading ---------------------------------------------------------------------------------


def _olympiad_items(config: BenchmarkConfig, rows: Sequence[OlympiadRow]) -> list[EvalItem]:
    unique = len({r.id for r in rows}) == len(rows)
    items = []
    for row in rows:
        items.append(
            EvalItem(
                benchmark=config.key,
                key=row.id if unique else f"{row.subset}/{row.id}",
                prompt=olympiad_prompt(row, config.prompt_variant),
                gold=", ".join(row.final_answer),
                groups={"subset": row.subset or "(none)", "answer_type": row.primary_answer_type},
                row=row,
            )
        )
    return items


def _supergpqa_items(config: BenchmarkConfig, rows: Sequence[SuperGPQARow]) -> list[EvalItem]:
    return [
        EvalItem(
            benchmark=config.key,
            key=row.id,
            prompt=supergpqa_prompt(row, config.prompt_variant),
            gold=row.answer_letter,
            groups={
                "difficulty": row.difficulty or "(none)",
                "discipline": row.discipline or "(none)",
                "field": row.field or "(none)",
                "subfield": row.subfield or "(none)",
            },
            row=row,
        )
        for row in rows
    ]


def load_benchmark(config: BenchmarkConfig) -> LoadedBenchmark:
    """Load, validate, build prompts, apply exclusions and the limit.

    Raises:
        ValueError: an unknown prompt variant or a bad limit.
        RowError / DatasetError: see :mod:`infuser.eval.data`.
    """
    if config.prompt_variant not in _PROMPTS[config.name]:
        raise ValueError(
            f"benchmark {config.key!r}: unknown prompt {config.prompt_variant!r}; choose from {_PROMPTS[config.name]}"
        )
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"benchmark {config.key!r}: limit must be >= 1, got {config.limit}")
    items: list[EvalItem]
    if config.name == "olympiadbench":
        olympiad = load_olympiadbench(
            config.path,
            hf_id=OLYMPIAD_HF_ID,
            revision=config.revision or OLYMPIAD_REVISION,
            subsets=config.subsets or (None if config.path and Path(config.path).is_file() else OLYMPIAD_DEFAULT_SUBSETS),
            split=config.split,
            on_bad_row=config.on_bad_row,
        )
        items, provenance, skipped = _olympiad_items(config, olympiad.rows), olympiad.provenance, olympiad.skipped
    else:
        if config.subsets:
            raise ValueError(f"benchmark {config.key!r}: SuperGPQA has no subsets; filter with a target set instead")
        gpqa = load_supergpqa(
            config.path, hf_id=SUPERGPQA_HF_ID, revision=config.revision, split=config.split,
            on_bad_row=config.on_bad_row,
        )
        items, provenance, skipped = _supergpqa_items(config, gpqa.rows), gpqa.provenance, gpqa.skipped
    all_keys = {item.key for item in items}

    excluded = None
    if config.exclude:
        records = []
        drop: set[str] = set()
        for path in config.exclude:
            exclusion = load_exclusion(path)
            removed = len(exclusion.ids & all_keys)
            records.append(exclusion.to_json(removed))
            drop |= exclusion.ids
        before = len(items)
        items = [item for item in items if item.key not in drop]
        excluded = {"files": records, "removed": before - len(items)}
    if config.limit is not None:
        items = items[: config.limit]
    if not items:
        raise DatasetError(f"benchmark {config.key!r}: no items left to evaluate")
    return LoadedBenchmark(config, items, all_keys, provenance.to_json(), list(skipped), excluded)


# -- predictions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One line of a predictions file."""

    benchmark: str | None
    id: str
    output: str
    sample: int | None
    prompt: str | None
    line: int


def read_predictions(path: str) -> list[Prediction]:
    """Parse and validate a predictions JSONL (``id`` and ``output`` required).

    Raises:
        RowError: naming the file, line and field.
        DatasetError: the file is missing or empty.
    """
    predictions = []
    for record in read_records(path):
        value = record.value
        if isinstance(value, RowError):
            raise value
        where = (record.source, record.row)

        def bad(field_name: str | None, problem: str) -> RowError:
            return RowError(where[0], where[1], field_name, problem, record.unit)

        if not isinstance(value, dict):
            raise bad(None, "expected a JSON object")
        raw_id = value.get("id", value.get("uuid"))
        if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise bad("id", "missing or not a string/integer")
        output = value.get("output")
        if not isinstance(output, str):
            raise bad("output", "missing or not a string")
        benchmark = value.get("benchmark")
        if benchmark is not None and not isinstance(benchmark, str):
            raise bad("benchmark", "not a string")
        sample = value.get("sample")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 0):
            raise bad("sample", "not a non-negative integer")
        prompt = value.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise bad("prompt", "not a string")
        predictions.append(Prediction(benchmark, str(raw_id).strip(), output, sample, prompt, record.row))
    if not predictions:
        raise DatasetError(f"{path}: no predictions")
    return predictions


@dataclass
class Generated:
    """Outputs for every item of every benchmark: ``outputs[benchmark][key]`` is the list of k
    samples; ``prompts`` the text actually fed to the model (if known)."""

    outputs: dict[str, dict[str, list[str]]]
    prompts: dict[str, dict[str, str]]
    missing: dict[str, int]
    ignored: int


def match_predictions(predictions: Sequence[Prediction], loaded: Sequence[LoadedBenchmark], path: str) -> Generated:
    """Assign prediction lines to benchmark items.

    Lines whose id belongs to an excluded or limited-away item are ignored (and counted); a line
    whose id is in no loaded benchmark, or is ambiguous between benchmarks without a
    ``benchmark`` field, is an error.
    """
    by_label = {b.config.key: b for b in loaded}
    outputs: dict[str, dict[str, list[tuple[int, str]]]] = {b.config.key: {} for b in loaded}
    prompts: dict[str, dict[str, str]] = {b.config.key: {} for b in loaded}
    active = {b.config.key: {item.key for item in b.items} for b in loaded}
    ignored = 0
    for p in predictions:
        if p.benchmark is not None:
            if p.benchmark not in by_label:
                raise RowError(path, p.line, "benchmark", f"unknown benchmark {p.benchmark!r}; have {sorted(by_label)}", "line")
            owners = [p.benchmark] if p.id in by_label[p.benchmark].all_keys else []
        else:
            owners = [label for label, b in by_label.items() if p.id in b.all_keys]
        if not owners:
            raise RowError(path, p.line, "id", f"{p.id!r} is not an item of {sorted(by_label)}", "line")
        if len(owners) > 1:
            raise RowError(path, p.line, "benchmark", f"id {p.id!r} occurs in {owners}; say which", "line")
        label = owners[0]
        if p.id not in active[label]:
            ignored += 1
            continue
        samples = outputs[label].setdefault(p.id, [])
        samples.append((p.sample if p.sample is not None else len(samples), p.output))
        if p.prompt is not None:
            prompts[label][p.id] = p.prompt
    ordered = {
        label: {key: [text for _, text in sorted(samples, key=lambda s: s[0])] for key, samples in items.items()}
        for label, items in outputs.items()
    }
    missing = {label: len(active[label] - set(ordered[label])) for label in active}
    return Generated(ordered, prompts, missing, ignored)


# -- the model ----------------------------------------------------------------------------------------------


def _dtype_name(name: str, device: str) -> str:
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    name = aliases.get(name, name)
    if name == "auto":
        import torch

        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bfloat16" if cuda_bf16 else "float32"
    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return name


def load_model(config: EvalModelConfig) -> tuple[Any, Any]:
    """Load the model and tokenizer through the project's loader (:mod:`infuser.models`, which
    also knows ``builtin:toy``), then the optional LoRA adapter; eval mode, on ``device``.

    Imports are local: scoring predictions never imports torch models.
    """
    import torch

    from infuser.config import ModelConfig
    from infuser.models import load_causal_lm, load_tokenizer

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_config = ModelConfig(
        name_or_path=config.name_or_path, revision=config.revision,
        dtype=_dtype_name(config.dtype, device),  # type: ignore[arg-type]
    )
    model = load_causal_lm(model_config)
    tokenizer = load_tokenizer(model_config)
    if config.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.adapter)
    model.to(device)
    model.eval()
    return model, tokenizer


def generate_outputs(
    model_config: EvalModelConfig, prompts: Sequence[str], sampling: EvalSamplingConfig, seed: int
) -> tuple[list[str], list[list[str]]]:
    """Render prompts and sample k completions each through the rollout engine.

    Returns:
        The rendered prompts and, per prompt, its k outputs.
    """
    import torch

    from infuser.rollout.engine import generate

    model, tokenizer = load_model(model_config)
    rendered = [
        render_prompt(p, tokenizer, model_config.chat_template, model_config.system_prompt) for p in prompts
    ]
    k = sampling.num_samples
    engine_sampling = sampling.engine(batch_size=max(1, model_config.batch_size * k))
    device = next(model.parameters()).device
    stream = torch.Generator(device=device)
    stream.manual_seed(seed)
    outputs: list[list[str]] = []
    step = max(1, model_config.batch_size)
    for start in range(0, len(rendered), step):
        chunk = rendered[start : start + step]
        batch = generate(model, tokenizer, chunk, engine_sampling, num_samples=k, stream=stream)
        texts = list(batch.texts)
        outputs.extend(texts[i * k : (i + 1) * k] for i in range(len(chunk)))
    return rendered, outputs


# -- scoring and the entry point ------------------------------------------------------------------------------


def _score(scorer: Scorer, benchmark: LoadedBenchmark, generated: Generated) -> list[ItemRecord]:
    label = benchmark.config.key
    flat_items: list[EvalItem] = []
    flat_outputs: list[str] = []
    flat_samples: list[int] = []
    missing: list[EvalItem] = []
    for item in benchmark.items:
        samples = generated.outputs[label].get(item.key)
        if not samples:
            missing.append(item)
            continue
        for index, text in enumerate(samples):
            flat_items.append(item)
            flat_outputs.append(text)
            flat_samples.append(index)
    scores: list[ItemScore]
    if benchmark.config.name == "olympiadbench":
        golds = [item.row.gold for item in flat_items]  # type: ignore[union-attr]
        scores = scorer.score_olympiad(flat_outputs, golds)
    else:
        scores = scorer.score_choice(flat_outputs, [item.row for item in flat_items])  # type: ignore[misc]
    records = [
        ItemRecord(
            benchmark=label, id=item.key, sample=sample,
            prompt=generated.prompts[label].get(item.key, item.prompt), output=text,
            extracted=score.extracted, gold=item.gold, correct=score.correct, missed=score.missed,
            reason=score.reason, method=score.method, groups=item.groups, truncated=score.truncated,
        )
        for item, text, sample, score in zip(flat_items, flat_outputs, flat_samples, scores)
    ]
    records += [
        ItemRecord(
            benchmark=label, id=item.key, sample=0, prompt=generated.prompts[label].get(item.key, item.prompt),
            output="", extracted=None, gold=item.gold, correct=False, missed=True, reason="no_prediction",
            method="none", groups=item.groups,
        )
        for item in missing
    ]
    return records


def model_outputs(loaded: Sequence[LoadedBenchmark], rendered: Sequence[str],
                  outputs: Sequence[list[str]]) -> Generated:
    """A model's ``outputs`` (k per item) for every item of ``loaded`` in order, each with the
    prompt it was given (``rendered``)."""
    generated = Generated({b.config.key: {} for b in loaded}, {b.config.key: {} for b in loaded},
                          {b.config.key: 0 for b in loaded}, 0)
    for item, prompt, samples in zip([item for b in loaded for item in b.items], rendered, outputs, strict=True):
        generated.outputs[item.benchmark][item.key] = samples
        generated.prompts[item.benchmark][item.key] = prompt
    return generated


def judge_outputs(scorer: Scorer, loaded: Sequence[LoadedBenchmark], generated: Generated
                  ) -> tuple[list[BenchmarkSummary], list[ItemRecord]]:
    """Judge ``generated`` against every benchmark of ``loaded``: a summary per benchmark (its
    ``accuracy`` is avg@k) and every judged sample."""
    summaries = []
    all_records: list[ItemRecord] = []
    for benchmark in loaded:
        records = _score(scorer, benchmark, generated)
        all_records += records
        summaries.append(
            summarize(
                benchmark.config.key, benchmark.config.name, benchmark.config.prompt_variant, records,
                benchmark.dataset, _BREAKDOWNS[benchmark.config.name],
                missing_predictions=generated.missing.get(benchmark.config.key, 0),
                skipped_rows=len(benchmark.skipped),
                skipped_examples=[str(e) for e in benchmark.skipped[:10]],
                excluded=benchmark.excluded,
            )
        )
    return summaries, all_records


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("infuser", "torch", "transformers", "math-verify", "latex2sympy2_extended", "sympy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def evaluate(
    benchmarks: list[BenchmarkConfig],
    model: EvalModelConfig | None = None,
    predictions: str | None = None,
    sampling: EvalSamplingConfig = EvalSamplingConfig(),
    judge: JudgeConfig = JudgeConfig(),
    output_dir: str = "runs/eval",
    seed: int = 0,
) -> EvalResults:
    """Evaluate a model, or score saved predictions, on one or more benchmarks.

    Args:
        benchmarks: the benchmark entries (at least one; labels must be unique).
        model: the model to run; leave out when scoring ``predictions``.
        predictions: a JSONL of ``{"id", "output"}`` lines to score instead of running a model.
        sampling: generation settings (also recorded in predictions mode, as the protocol the
            outputs are declared to follow).
        judge: time limit, workers and judging options.
        output_dir: where ``results.json``, ``results.md`` and ``items.jsonl`` go.
        seed: seeds Python's and the generator's RNGs.

    Returns:
        The results that were written.

    Raises:
        ValueError: neither or both of ``model`` and ``predictions``, duplicate labels, bad
            options. Data problems raise :class:`RowError` / :class:`DatasetError`.
    """
    if not benchmarks:
        raise ValueError("evaluate() needs at least one benchmark")
    if (model is None) == (predictions is None):
        raise ValueError("give exactly one of 'model' (run a model) or 'predictions' (score a JSONL of outputs)")
    labels = [b.key for b in benchmarks]
    if len(set(labels)) != len(labels):
        raise ValueError(f"benchmark labels must be unique, got {labels}; set 'label' on repeated benchmarks")
    random.seed(seed)

    loaded = [load_benchmark(config) for config in benchmarks]
    if predictions is not None:
        generated = match_predictions(read_predictions(predictions), loaded, predictions)
        mode = "predictions"
    else:
        assert model is not None
        flat = [item for b in loaded for item in b.items]
        rendered, outputs = generate_outputs(model, [item.prompt for item in flat], sampling, seed)
        generated = model_outputs(loaded, rendered, outputs)
        mode = "model"

    with Scorer(judge) as scorer:
        summaries, all_records = judge_outputs(scorer, loaded, generated)
        restarts = scorer.restarts

    protocol = {
        "mode": mode,
        "model": asdict(model) if model is not None else None,
        "predictions": (
            {"path": predictions, "sha256": sha256_file(predictions), "ignored_lines": generated.ignored}
            if predictions is not None else None
        ),
        "sampling": asdict(sampling),
        "seed": seed,
        "judge": {**asdict(judge), "worker_restarts": restarts},
        "benchmarks": [asdict(b) for b in benchmarks],
        "versions": _versions(),
    }
    versions = protocol["versions"]
    assert isinstance(versions, dict)
    results = EvalResults(
        protocol=protocol,
        benchmarks=tuple(summaries),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        infuser_version=str(versions.get("infuser", "unknown")),
    )
    write_results(results, all_records, output_dir)
    return results


def main(argv: Sequence[str] | None = None) -> EvalResults:
    """``python -m infuser.eval.run --config FILE.yaml [--predictions P.jsonl]`` (the same
    parser ``infuser eval`` uses)."""
    from jsonargparse import CLI

    return CLI(evaluate, args=None if argv is None else list(argv), as_positional=False)


if __name__ == "__main__":  # pragma: no cover
    result = main()
    print(json.dumps(result.to_json()["overall"], indent=2))
