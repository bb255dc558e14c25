"""``infuser eval``: run a model (or score saved outputs) on the bundled benchmarks.

The coding benchmarks (HumanEval, HumanEval+) are scored by running each completion against the
problem's test through the ``executor`` (the sandbox, :mod:`infuser.sandbox`), never in this process.

:func:`evaluate` is the entry point; its parameters are plain typed values and dataclasses so
that ``jsonargparse`` can expose it as ``infuser eval --config FILE.yaml [--predictions P.jsonl]``.

Two modes:

* **model**: prompts are built per benchmark, wrapped in the chat template when asked for, and
  sampled ``k`` times each through :func:`infuser.rollout.engine.generate` (model loading and
  generation live in :mod:`infuser.eval.generation`, the only place that imports them);
* **predictions**: a JSONL file of ``{"id", "output"}`` lines (optional ``benchmark``,
  ``sample``, ``prompt``) is scored against the dataset; several lines with one id are its k
  samples (:mod:`infuser.eval.predictions`).

Either way the benchmarks' items come from :mod:`infuser.eval.items`, every output is judged here,
and both modes write ``results.json``, ``results.md`` and ``items.jsonl`` (see
:mod:`infuser.eval.report`), with the protocol that produced them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone

from infuser.eval.code import score_code
from infuser.eval.generation import EvalModelConfig, EvalSamplingConfig, generate_outputs
from infuser.eval.items import BREAKDOWNS, CODE_BENCHMARKS, BenchmarkConfig, EvalItem, LoadedBenchmark, load_benchmark
from infuser.eval.predictions import Generated, match_predictions, model_outputs, read_predictions
from infuser.eval.report import BenchmarkSummary, EvalResults, ItemRecord, library_versions, summarize, write_results
from infuser.eval.score import ItemScore, JudgeConfig, Scorer
from infuser.eval.sources import sha256_file
from infuser.sandbox.base import Executor

# -- scoring and the entry point ------------------------------------------------------------------------------


def _score(scorer: Scorer, benchmark: LoadedBenchmark, generated: Generated, executor: Executor | None
           ) -> list[ItemRecord]:
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
    code = benchmark.config.name in CODE_BENCHMARKS
    if code:
        assert executor is not None
        scores = score_code(executor, flat_outputs, [item.row for item in flat_items])  # type: ignore[misc]
    elif benchmark.config.name == "olympiadbench":
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
            detail=score.detail if code else None,
        )
        for item, text, sample, score in zip(flat_items, flat_outputs, flat_samples, scores)
    ]
    records += [
        ItemRecord(
            benchmark=label, id=item.key, sample=0, prompt=generated.prompts[label].get(item.key, item.prompt),
            output="", extracted=None, gold=item.gold, correct=False, missed=True, reason="no_prediction",
            method="none", groups=item.groups, detail="" if code else None,
        )
        for item in missing
    ]
    return records


def code_executor(loaded: Sequence[LoadedBenchmark], executor: Executor | None) -> Executor | None:
    """The executor that runs the coding benchmarks' programs: ``executor``, or the default
    ``local`` one where a coding benchmark is loaded and none was given (``None`` without one)."""
    if executor is not None or not any(b.config.name in CODE_BENCHMARKS for b in loaded):
        return executor
    from infuser.sandbox.local import LocalExecutor

    return LocalExecutor()


def judge_outputs(scorer: Scorer, loaded: Sequence[LoadedBenchmark], generated: Generated,
                  executor: Executor | None = None) -> tuple[list[BenchmarkSummary], list[ItemRecord]]:
    """Judge ``generated`` against every benchmark of ``loaded``: a summary per benchmark (its
    ``accuracy`` is avg@k; pass@k too for the coding benchmarks, whose programs ``executor`` runs,
    :func:`code_executor`'s default if ``None``) and every judged sample (``infuser eval`` and
    ``loop.eval_benchmarks``)."""
    executor = code_executor(loaded, executor)
    summaries = []
    all_records: list[ItemRecord] = []
    for benchmark in loaded:
        records = _score(scorer, benchmark, generated, executor)
        all_records += records
        summaries.append(
            summarize(
                benchmark.config.key, benchmark.config.name, benchmark.config.prompt_variant, records,
                benchmark.dataset, BREAKDOWNS[benchmark.config.name],
                missing_predictions=generated.missing.get(benchmark.config.key, 0),
                skipped_rows=len(benchmark.skipped),
                skipped_examples=[str(e) for e in benchmark.skipped[:10]],
                excluded=benchmark.excluded,
                pass_k=benchmark.config.name in CODE_BENCHMARKS,
            )
        )
    return summaries, all_records


def evaluate(
    benchmarks: list[BenchmarkConfig],
    model: EvalModelConfig | None = None,
    predictions: str | None = None,
    sampling: EvalSamplingConfig = EvalSamplingConfig(),
    judge: JudgeConfig = JudgeConfig(),
    executor: Executor | None = None,
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
        executor: runs the coding benchmarks' programs (HumanEval, HumanEval+) in the sandbox;
            default ``local`` with its defaults. Unused without a coding benchmark.
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

    executor = code_executor(loaded, executor)
    with Scorer(judge) as scorer:
        summaries, all_records = judge_outputs(scorer, loaded, generated, executor)
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
        "executor": executor.describe() if executor is not None else None,
        "benchmarks": [asdict(b) for b in benchmarks],
        "versions": library_versions(),
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
