"""The outputs an evaluation scores, per benchmark and item: read from a predictions file
(``{"id", "output"}`` lines, optional ``benchmark``, ``sample`` and ``prompt``; several lines with
one id are its k samples) and matched to the loaded items, or gathered from the model
(:class:`Generated` either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infuser.eval.items import LoadedBenchmark
from infuser.eval.sources import DatasetError, RowError, read_records


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


def model_outputs(loaded: Sequence[LoadedBenchmark], rendered: Sequence[str],
                  outputs: Sequence[list[str]]) -> Generated:
    """A model's ``outputs`` (k per item) for every item of ``loaded`` in order, each with the
    prompt it was given (``rendered``): what ``infuser eval`` and ``loop.eval_benchmarks`` judge."""
    generated = Generated({b.config.key: {} for b in loaded}, {b.config.key: {} for b in loaded},
                          {b.config.key: 0 for b in loaded}, 0)
    for item, prompt, samples in zip([item for b in loaded for item in b.items], rendered, outputs, strict=True):
        generated.outputs[item.benchmark][item.key] = samples
        generated.prompts[item.benchmark][item.key] = prompt
    return generated


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
