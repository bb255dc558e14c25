"""infuser's OlympiadBench judge against the official rules, on answers generated from real rows.

    python -m benchmarks.judge_differential --json judge_differential.json
    python -m benchmarks.judge_differential --rows path/to/OE_TO_maths_en_COMP.jsonl --limit 1500

Every variant of every row's gold answer (as written, respaced, reordered, one answer dropped,
rounded to 6 decimals, x100, /100, inside and outside the tolerance, plus one, clearly wrong; see
``tests/eval/differential.py``) is judged by infuser's union judge and by the reference reading of
the official rules (``tests/eval/official_reference.py``). Prints agreement per variant and the
deviation behind every disagreement (docs/eval.md names them); an unexplained disagreement is a
bug and makes the script exit with status 1. The test suite runs a seeded 1,500-answer sample of
the same comparison.

Then every answer is stated in a whole output, once per form of ``OUTPUT_FORMS`` (the official
closing sentence, a last box, the last line's inline math), and judged again: infuser extracts
and judges, the reference follows the official pipeline (its extraction, then its judge). The
agreement per form is printed after the answers' tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = REPO.parent / "shared" / "data" / "olympiadbench" / "OE_TO_maths_en_COMP.jsonl"
sys.path.insert(0, str(REPO / "tests" / "eval"))

from differential import OUTPUT_FORMS, Comparison, cases, compare, compare_outputs  # noqa: E402

from infuser.eval.data import load_olympiadbench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, default=DEFAULT_ROWS, help="OlympiadBench JSONL (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="a seeded sample of this many answers (default: all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not args.rows.is_file():
        raise SystemExit(f"{args.rows}: no such file; pass --rows with an OlympiadBench JSONL")
    logging.disable(logging.WARNING)  # math-verify warns on every call without its own timeout
    rows = load_olympiadbench(str(args.rows)).rows
    results = compare(cases(rows, args.limit))
    by_variant: dict[str, Counter[str]] = {}
    for r in results:
        by_variant.setdefault(r.case.variant, Counter())["agree" if r.agree else (r.deviation or "UNEXPLAINED")] += 1
    agreement = sum(r.agree for r in results) / len(results)
    print(f"{len(results)} answers to {len(rows)} rows; agreement {100 * agreement:.2f}%\n")
    print("| variant | answers | agree | disagreements (deviation) |")
    print("|---|---:|---:|---|")
    for variant, counts in sorted(by_variant.items()):
        others = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if name != "agree") or "-"
        print(f"| {variant} | {sum(counts.values())} | {counts['agree']} | {others} |")
    disagreements = [r for r in results if not r.agree]
    print("\n| row | variant | gold | answer | infuser | official | deviation |")
    print("|---|---|---|---|---|---|---|")
    for r in disagreements:
        print(f"| {r.case.row.id} | {r.case.variant} | `{r.case.official_gold[:40]}` | `{r.case.answer[:40]}` | "
              f"{r.ours} ({r.reason}) | {r.official} | {r.deviation or 'UNEXPLAINED'} |")
    stated = _stated_in_outputs(results)
    if args.json:
        args.json.write_text(json.dumps({
            "rows": str(args.rows), "answers": len(results), "agreement": agreement,
            "by_variant": {v: dict(c) for v, c in by_variant.items()},
            "outputs": {form: {"answers": len(found), "agreement": sum(r.agree for r in found) / max(len(found), 1)}
                        for form, found in stated.items()},
            "disagreements": [
                {"row": r.case.row.id, "variant": r.case.variant, "gold": r.case.official_gold, "answer": r.case.answer,
                 "infuser": r.ours, "reason": r.reason, "official": r.official, "deviation": r.deviation}
                for r in disagreements
            ],
        }, indent=2) + "\n", encoding="utf-8")
    everything = [*disagreements, *(r for found in stated.values() for r in found)]
    return 1 if any(not r.agree and r.deviation is None for r in everything) else 0


def _stated_in_outputs(results: list[Comparison]) -> dict[str, list[Comparison]]:
    """The same answers stated in whole outputs, one comparison list per form; prints a table."""
    answers = [r.case for r in results]
    stated = {form: compare_outputs(answers, form) for form in OUTPUT_FORMS}
    print("\n| stated in an output as | answers | agreement | disagreements (deviation) |")
    print("|---|---:|---:|---|")
    for form, found in stated.items():
        counts = Counter(r.deviation or "UNEXPLAINED" for r in found if not r.agree)
        others = ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "-"
        print(f"| {form} | {len(found)} | {100 * sum(r.agree for r in found) / max(len(found), 1):.2f}% | {others} |")
    for r in (r for found in stated.values() for r in found if not r.agree and r.deviation is None):
        print(f"UNEXPLAINED: row {r.case.row.id}, {r.form}, answer `{r.case.answer[:60]}`: infuser {r.ours} "
              f"({r.reason}), official {r.official}")
    return stated


if __name__ == "__main__":
    sys.exit(main())
