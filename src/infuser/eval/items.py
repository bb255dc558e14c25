"""The items of a benchmark entry (:class:`~infuser.config.BenchmarkConfig`): its rows loaded and validated, each turned
into a prompt with its gold answer and group labels, target-set exclusions dropped and the limit
applied (:func:`load_benchmark`); and the groups its accuracy is broken down by (``BREAKDOWNS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuser.config import BenchmarkConfig
from infuser.eval.data import (
    HUMANEVAL_ROWS,
    OLYMPIAD_DEFAULT_SUBSETS,
    OLYMPIAD_HF_ID,
    OLYMPIAD_REVISION,
    SUPERGPQA_HF_ID,
    CodeRow,
    OlympiadRow,
    SuperGPQARow,
    load_code_benchmark,
    load_olympiadbench,
    load_supergpqa,
)
from infuser.eval.prompts import (
    CODE_PROMPTS,
    OLYMPIAD_PROMPTS,
    SUPERGPQA_PROMPTS,
    code_prompt,
    olympiad_prompt,
    supergpqa_prompt,
)
from infuser.eval.sources import DatasetError, RowError
from infuser.eval.target_set import load_exclusion

CODE_BENCHMARKS = ("humaneval", "humanevalplus")
"""Benchmarks scored by running code (:mod:`infuser.eval.code`), with pass@k."""
_PROMPTS = {"olympiadbench": OLYMPIAD_PROMPTS, "supergpqa": SUPERGPQA_PROMPTS, "humaneval": CODE_PROMPTS,
            "humanevalplus": CODE_PROMPTS}
BREAKDOWNS: dict[str, tuple[str, ...]] = {
    "olympiadbench": ("subset", "answer_type"),
    "supergpqa": ("difficulty", "discipline", "field", "subfield"),
    "humaneval": (),
    "humanevalplus": (),
}


@dataclass(frozen=True)
class EvalItem:
    """One benchmark item ready to run: its key, prompt, gold and group labels."""

    benchmark: str
    key: str
    prompt: str
    gold: str
    groups: dict[str, str]
    row: OlympiadRow | SuperGPQARow | CodeRow


@dataclass
class LoadedBenchmark:
    """A benchmark entry after loading, exclusion and limiting."""

    config: BenchmarkConfig
    items: list[EvalItem]
    all_keys: set[str]
    dataset: dict[str, Any]
    skipped: list[RowError]
    excluded: dict[str, Any] | None


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


def _code_items(config: BenchmarkConfig, rows: Sequence[CodeRow]) -> list[EvalItem]:
    return [
        EvalItem(benchmark=config.key, key=row.id, prompt=code_prompt(row, config.prompt_variant),
                 gold=row.canonical_solution, groups={}, row=row)
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
    elif config.name in CODE_BENCHMARKS:
        if config.subsets:
            raise ValueError(f"benchmark {config.key!r}: {config.name} has no subsets")
        if config.name == "humanevalplus" and config.path is None:
            raise ValueError(f"benchmark {config.key!r}: humanevalplus needs 'path' (an EvalPlus release's "
                             "HumanEvalPlus.jsonl or .jsonl.gz; nothing is downloaded)")
        code = load_code_benchmark(config.path, on_bad_row=config.on_bad_row)
        if config.path is None and len(code.rows) != HUMANEVAL_ROWS:
            raise DatasetError(f"the packaged HumanEval has {len(code.rows)} problems, not {HUMANEVAL_ROWS}")
        items, provenance, skipped = _code_items(config, code.rows), code.provenance, code.skipped
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
