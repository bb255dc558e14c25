"""Results of an evaluation: summaries, ``results.json``, a Markdown table, per-item JSONL.

Accuracy is avg@k: each item scores the fraction of its k samples judged correct, and a
benchmark's (or a group's) accuracy is the mean over its items. The miss rate is the fraction of
samples with no extractable answer. Breakdowns give every group's accuracy, the micro accuracy
(all items, equal to the benchmark accuracy) and the macro accuracy (mean over groups).

The coding benchmarks also report pass@k (:func:`pass_at_k`, the unbiased estimator of Chen et
al. 2021, averaged over items) for every k of :func:`pass_k_values`: powers of two, 10 and 100,
and the number of samples itself, up to the fewest samples any item has (pass@k needs k samples
of every item; an item with no prediction counts as one wrong sample). pass@1 equals avg@k.

``results.json`` layout (``RESULTS_SCHEMA`` = 1)::

    {
      "schema": 1, "harness_version": ..., "infuser_version": ..., "created": ISO time,
      "protocol": {"mode": "model" | "predictions", "model": {...} | null,
                   "predictions": {"path", "sha256"} | null, "sampling": {...}, "seed": ...,
                   "judge": {...}},
      "overall": {"accuracy_micro": ..., "accuracy_macro": ..., "items": ..., "samples": ...},
      "benchmarks": {
        "<name>": {
          "benchmark": "olympiadbench" | "supergpqa", "prompt_variant": ...,
          "dataset": {"kind", "source", "revision", "files", "subsets", "split"},
          "items": ..., "samples": ..., "samples_per_item": {"min", "max"},
          "accuracy": ..., "correct_samples": ..., "miss_rate": ..., "misses": ...,
          "timeouts": ..., "errors": ..., "missing_predictions": ...,
          "pass_at_k": {"1": ..., "2": ..., ...}  (coding benchmarks only),
          "skipped_rows": {"count", "examples"}, "excluded": {...} | null,
          "breakdowns": {"<by>": {"micro", "macro", "groups": {"<g>": {"accuracy", "items",
                                                                        "samples", "misses"}}}}
        }
      }
    }
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infuser.artifacts import atomic_path, write_jsonl

RESULTS_SCHEMA = 1
HARNESS_VERSION = "infuser-eval/1.0"


def library_versions() -> dict[str, str]:
    """Python's version and those of the libraries a result depends on (``protocol.versions``)."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("infuser", "torch", "transformers", "math-verify", "latex2sympy2_extended", "sympy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


@dataclass(frozen=True)
class ItemRecord:
    """One judged sample, as written to ``items.jsonl``.

    Attributes:
        benchmark: the benchmark entry's name.
        id: the item id.
        sample: sample index within the item (0..k-1).
        prompt: the prompt text (after the chat template, when one was applied).
        output: the model output.
        extracted: the extracted answer or letter (``None`` for a miss).
        gold: the gold answer (OlympiadBench) or letter (SuperGPQA).
        correct / missed: the judgement; a miss is also wrong.
        reason / method: the judge's reason and the extraction rule.
        groups: the item's group labels (``subset``, ``answer_type``, ``difficulty``...).
        truncated: only the tail of the output was judged (it exceeded ``max_output_chars``).
        detail: the coding benchmarks' first failure (the exception, the limit hit); ``None``
            (and not written) for the others.
    """

    benchmark: str
    id: str
    sample: int
    prompt: str
    output: str
    extracted: str | None
    gold: str
    correct: bool
    missed: bool
    reason: str
    method: str
    groups: Mapping[str, str] = field(default_factory=dict)
    truncated: bool = False
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark, "id": self.id, "sample": self.sample, "prompt": self.prompt,
            "output": self.output, "extracted": self.extracted, "gold": self.gold,
            "correct": self.correct, "missed": self.missed, "reason": self.reason,
            "method": self.method, "truncated": self.truncated,
            **({"detail": self.detail} if self.detail is not None else {}),
            **{f"group_{k}": v for k, v in self.groups.items()},
        }


@dataclass(frozen=True)
class GroupStats:
    """Accuracy of one group of items."""

    accuracy: float
    items: int
    samples: int
    misses: int


@dataclass(frozen=True)
class Breakdown:
    """Accuracy by one grouping (e.g. by difficulty)."""

    micro: float
    macro: float
    groups: Mapping[str, GroupStats]


@dataclass(frozen=True)
class BenchmarkSummary:
    """Everything ``results.json`` says about one benchmark entry."""

    name: str
    benchmark: str
    prompt_variant: str
    dataset: Mapping[str, Any]
    items: int
    samples: int
    samples_per_item: tuple[int, int]
    accuracy: float
    correct_samples: int
    miss_rate: float
    misses: int
    timeouts: int
    errors: int
    missing_predictions: int
    skipped_rows: int
    skipped_examples: tuple[str, ...]
    excluded: Mapping[str, Any] | None
    breakdowns: Mapping[str, Breakdown]
    pass_at_k: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResults:
    """The whole evaluation: protocol, per-benchmark summaries and an overall line."""

    protocol: Mapping[str, Any]
    benchmarks: tuple[BenchmarkSummary, ...]
    created: str
    infuser_version: str

    @property
    def accuracy_micro(self) -> float:
        """Mean item accuracy over all items of all benchmarks."""
        items = sum(b.items for b in self.benchmarks)
        return sum(b.accuracy * b.items for b in self.benchmarks) / items if items else 0.0

    @property
    def accuracy_macro(self) -> float:
        """Mean of the benchmark accuracies."""
        return sum(b.accuracy for b in self.benchmarks) / len(self.benchmarks) if self.benchmarks else 0.0

    def benchmark(self, name: str) -> BenchmarkSummary:
        for summary in self.benchmarks:
            if summary.name == name:
                return summary
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": RESULTS_SCHEMA,
            "harness_version": HARNESS_VERSION,
            "infuser_version": self.infuser_version,
            "created": self.created,
            "protocol": dict(self.protocol),
            "overall": {
                "accuracy_micro": self.accuracy_micro,
                "accuracy_macro": self.accuracy_macro,
                "items": sum(b.items for b in self.benchmarks),
                "samples": sum(b.samples for b in self.benchmarks),
            },
            "benchmarks": {b.name: _summary_json(b) for b in self.benchmarks},
        }


def _summary_json(summary: BenchmarkSummary) -> dict[str, Any]:
    return {
        "benchmark": summary.benchmark,
        "prompt_variant": summary.prompt_variant,
        "dataset": dict(summary.dataset),
        "items": summary.items,
        "samples": summary.samples,
        "samples_per_item": {"min": summary.samples_per_item[0], "max": summary.samples_per_item[1]},
        "accuracy": summary.accuracy,
        "correct_samples": summary.correct_samples,
        "miss_rate": summary.miss_rate,
        "misses": summary.misses,
        "timeouts": summary.timeouts,
        "errors": summary.errors,
        "missing_predictions": summary.missing_predictions,
        "skipped_rows": {"count": summary.skipped_rows, "examples": list(summary.skipped_examples)},
        "excluded": dict(summary.excluded) if summary.excluded is not None else None,
        **({"pass_at_k": {str(k): v for k, v in summary.pass_at_k.items()}} if summary.pass_at_k else {}),
        "breakdowns": {
            by: {
                "micro": b.micro,
                "macro": b.macro,
                "groups": {
                    g: {"accuracy": s.accuracy, "items": s.items, "samples": s.samples, "misses": s.misses}
                    for g, s in b.groups.items()
                },
            }
            for by, b in summary.breakdowns.items()
        },
    }


def _item_scores(records: Sequence[ItemRecord]) -> dict[str, list[ItemRecord]]:
    by_item: dict[str, list[ItemRecord]] = {}
    for record in records:
        by_item.setdefault(record.id, []).append(record)
    return by_item


def _mean_accuracy(items: Sequence[Sequence[ItemRecord]]) -> float:
    if not items:
        return 0.0
    return sum(sum(r.correct for r in samples) / len(samples) for samples in items) / len(items)


def breakdown(records: Sequence[ItemRecord], by: str) -> Breakdown:
    """Accuracy grouped by the ``by`` label (items without the label go to ``"(none)"``)."""
    grouped: dict[str, list[list[ItemRecord]]] = {}
    for samples in _item_scores(records).values():
        label = samples[0].groups.get(by) or "(none)"
        grouped.setdefault(label, []).append(samples)
    groups = {
        label: GroupStats(
            accuracy=_mean_accuracy(items),
            items=len(items),
            samples=sum(len(s) for s in items),
            misses=sum(r.missed for s in items for r in s),
        )
        for label, items in sorted(grouped.items())
    }
    all_items = [s for items in grouped.values() for s in items]
    macro = sum(g.accuracy for g in groups.values()) / len(groups) if groups else 0.0
    return Breakdown(micro=_mean_accuracy(all_items), macro=macro, groups=groups)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k for an item with ``c`` of its ``n`` samples correct:
    ``1 - C(n - c, k) / C(n, k)``, computed as a product (no huge binomials)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def pass_k_values(samples: int) -> tuple[int, ...]:
    """The k reported when every item has at least ``samples`` samples: powers of two, 10, 100 and
    ``samples`` itself, none above ``samples``."""
    ks = {1 << i for i in range(samples.bit_length())} | {10, 100, samples}
    return tuple(sorted(k for k in ks if 1 <= k <= samples))


def summarize(
    name: str,
    benchmark: str,
    prompt_variant: str,
    records: Sequence[ItemRecord],
    dataset: Mapping[str, Any],
    breakdown_by: Sequence[str],
    *,
    missing_predictions: int = 0,
    skipped_rows: int = 0,
    skipped_examples: Sequence[str] = (),
    excluded: Mapping[str, Any] | None = None,
    pass_k: bool = False,
) -> BenchmarkSummary:
    """Summarise the judged samples of one benchmark entry (with ``pass_k``, its pass@k too)."""
    by_item = _item_scores(records)
    counts = [len(s) for s in by_item.values()] or [0]
    passes: dict[int, float] = {}
    if pass_k and by_item:
        for k in pass_k_values(min(counts)):
            estimates = [pass_at_k(len(s), sum(r.correct for r in s), k) for s in by_item.values()]
            passes[k] = sum(estimates) / len(estimates)
    samples = len(records)
    misses = sum(r.missed for r in records)
    return BenchmarkSummary(
        name=name,
        benchmark=benchmark,
        prompt_variant=prompt_variant,
        dataset=dataset,
        items=len(by_item),
        samples=samples,
        samples_per_item=(min(counts), max(counts)),
        accuracy=_mean_accuracy(list(by_item.values())),
        correct_samples=sum(r.correct for r in records),
        miss_rate=misses / samples if samples else 0.0,
        misses=misses,
        timeouts=sum(r.reason == "timeout" for r in records),
        errors=sum(r.reason == "error" for r in records),
        missing_predictions=missing_predictions,
        skipped_rows=skipped_rows,
        skipped_examples=tuple(skipped_examples),
        excluded=excluded,
        breakdowns={by: breakdown(records, by) for by in breakdown_by},
        pass_at_k=passes,
    )


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown_table(results: EvalResults) -> str:
    """A Markdown summary: one line per benchmark, then one table per breakdown."""
    sampling = results.protocol.get("sampling", {})
    model = results.protocol.get("model") or {}
    source = model.get("name_or_path") or (results.protocol.get("predictions") or {}).get("path", "?")
    lines = [
        "# infuser eval results",
        "",
        f"Model / predictions: `{source}`; sampling: {json.dumps(sampling, sort_keys=True)}; "
        f"seed {results.protocol.get('seed')}; {HARNESS_VERSION}.",
        "",
        "| benchmark | prompt | items | k | accuracy (avg@k, %) | miss rate (%) | timeouts |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b in results.benchmarks:
        k = str(b.samples_per_item[0]) if b.samples_per_item[0] == b.samples_per_item[1] else f"{b.samples_per_item[0]}-{b.samples_per_item[1]}"
        lines.append(
            f"| {b.name} | {b.prompt_variant} | {b.items} | {k} | {_pct(b.accuracy)} | {_pct(b.miss_rate)} | {b.timeouts} |"
        )
    lines.append(
        f"| **overall** | | {sum(b.items for b in results.benchmarks)} | | "
        f"{_pct(results.accuracy_micro)} (macro {_pct(results.accuracy_macro)}) | | |"
    )
    for b in results.benchmarks:
        if b.pass_at_k:
            lines += ["", f"## {b.name} pass@k", "", "| k | pass@k (%) |", "|---:|---:|"]
            lines += [f"| {k} | {_pct(value)} |" for k, value in b.pass_at_k.items()]
        for by, table in b.breakdowns.items():
            lines += [
                "",
                f"## {b.name} by {by} (micro {_pct(table.micro)}, macro {_pct(table.macro)})",
                "",
                f"| {by} | items | accuracy (%) | misses |",
                "|---|---:|---:|---:|",
            ]
            for label, stats in table.groups.items():
                lines.append(f"| {label} | {stats.items} | {_pct(stats.accuracy)} | {stats.misses} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ResultPaths:
    """Where :func:`write_results` put the files."""

    results_json: Path
    markdown: Path
    items_jsonl: Path


def write_results(results: EvalResults, records: Sequence[ItemRecord], output_dir: str | Path) -> ResultPaths:
    """Write ``items.jsonl``, ``results.md`` and ``results.json`` into ``output_dir``.

    The files are written completely or not at all: all three under temporary names first, then
    renamed into place (``results.json`` last), so a failure while writing leaves the previous
    files, or none, and never a mix. Model output can hold any character: a lone surrogate (which UTF-8
    cannot encode) is stored as its ``\\udXXXX`` escape, which JSON reads back as the same string.
    """
    out = Path(output_dir)
    paths = ResultPaths(out / "results.json", out / "results.md", out / "items.jsonl")
    summary = json.dumps(results.to_json(), indent=2, ensure_ascii=False) + "\n"
    table = markdown_table(results)
    with (
        atomic_path(paths.results_json) as results_tmp,
        atomic_path(paths.markdown) as markdown_tmp,
        atomic_path(paths.items_jsonl) as items_tmp,
    ):
        write_jsonl(items_tmp, [record.to_json() for record in records])
        markdown_tmp.write_text(table, encoding="utf-8", errors="backslashreplace")
        results_tmp.write_text(summary, encoding="utf-8", errors="backslashreplace")
    return paths
