"""How long ``infuser eval --predictions`` takes end to end, and what it imports.

    python -m benchmarks.eval_startup --json eval_startup.json
    python -m benchmarks.eval_startup --rows path/to/OE_TO_maths_en_COMP.jsonl --repeats 7

Scoring saved outputs needs no model, so it should cost what it does (start Python, load and check
the rows, start one judge worker, judge) and not the seconds of importing torch, transformers and
peft. The benchmark writes one predictions line per row (the gold answer in the official format,
``So the final answer is $\\boxed{...}$.``), then times, each ``--repeats`` times in a fresh
process:

* ``python -m infuser.eval.run --config C --predictions P``: the harness's own entry point;
* ``infuser eval --config C --predictions P``: the command line (``infuser.cli``);

and, once, a probe process that imports :mod:`infuser.eval.run`, starts a judge worker on its own
(to time it), runs :func:`~infuser.eval.run.evaluate` on the predictions, and reports the time of
each part and which heavy packages (torch, transformers, peft, lightning, torchmetrics) ended up
imported.

The rows default to ``../shared/data/olympiadbench/OE_TO_maths_en_COMP.jsonl`` beside the checkout
(675 rows); any OlympiadBench-shaped JSONL works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = REPO.parent / "shared" / "data" / "olympiadbench" / "OE_TO_maths_en_COMP.jsonl"
HEAVY = ("torch", "transformers", "peft", "lightning", "torchmetrics")

PROBE = """
import json, sys, time
start = time.perf_counter()
from infuser.eval.run import evaluate
from infuser.eval.items import BenchmarkConfig
imported = time.perf_counter()
from infuser.eval.score import Scorer
with Scorer() as scorer:
    scorer.pool.call(len, "")
worker = time.perf_counter()
evaluate([BenchmarkConfig(name="olympiadbench", path=sys.argv[1])], predictions=sys.argv[2], output_dir=sys.argv[3])
done = time.perf_counter()
print(json.dumps({
    "import_s": imported - start, "worker_start_s": worker - imported, "evaluate_s": done - worker,
    "heavy_modules_imported": [m for m in %r if m in sys.modules],
}))
""" % (HEAVY,)


def write_inputs(rows: Path, folder: Path) -> tuple[Path, Path, int]:
    """A predictions file with every row's gold answer, and a config that scores it."""
    lines = []
    with open(rows, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                answer = ", ".join(row["final_answer"]).replace("$", "")
                lines.append({"id": row["id"], "output": f"Work.\nSo the final answer is $\\boxed{{{answer}}}$."})
    predictions = folder / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    config = folder / "eval.yaml"
    config.write_text(
        f"benchmarks:\n  - name: olympiadbench\n    path: {json.dumps(str(rows))}\n"
        f"output_dir: {json.dumps(str(folder / 'out'))}\n",
        encoding="utf-8",
    )
    return config, predictions, len(lines)


def time_command(command: list[str], repeats: int) -> dict[str, object]:
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return {"command": " ".join(command), "median_s": statistics.median(walls), "min_s": min(walls),
            "max_s": max(walls), "runs": walls}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, default=DEFAULT_ROWS, help="OlympiadBench JSONL (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not args.rows.is_file():
        raise SystemExit(f"{args.rows}: no such file; pass --rows with an OlympiadBench JSONL")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, predictions, count = write_inputs(args.rows, folder)
        flags = ["--config", str(config), "--predictions", str(predictions)]
        infuser = [sys.executable, "-c", "import sys; from infuser.cli import main; sys.exit(main())", "eval"]
        commands = {
            "python -m infuser.eval.run": [sys.executable, "-m", "infuser.eval.run", *flags],
            "infuser eval": [*infuser, *flags],
        }
        timings = {name: time_command(command, args.repeats) for name, command in commands.items()}
        probe = subprocess.run([sys.executable, "-c", PROBE, str(args.rows), str(predictions), str(folder / "probe")],
                               capture_output=True, text=True, cwd=REPO, env={**os.environ})
        if probe.returncode != 0:
            raise SystemExit(f"probe failed:\n{probe.stderr[-2000:]}")
        parts = json.loads(probe.stdout.strip().splitlines()[-1])
        results = json.loads((folder / "out" / "results.json").read_text(encoding="utf-8"))
    report = {
        "rows": str(args.rows), "items": count, "accuracy": results["overall"]["accuracy_micro"],
        "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "timings": timings, "probe": parts,
    }
    print(f"{count} rows, every gold answer judged correct: {report['accuracy'] == 1.0}")
    print(f"\n| command (predictions path, {count} rows) | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for name, t in timings.items():
        print(f"| `{name}` | {t['median_s']:.2f} | {t['min_s']:.2f} | {t['max_s']:.2f} |")
    print(f"\nprobe: import infuser.eval.run {parts['import_s']:.2f} s; evaluate {parts['evaluate_s']:.2f} s, of which "
          f"starting its judge worker takes about {parts['worker_start_s']:.2f} s (timed on its own first); "
          f"heavy packages imported: {parts['heavy_modules_imported'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
