"""Would TracIn have chosen other questions than the optimizer-aware influence? INFUSER runs with
TracIn (dot and cosine) shadow-scoring every iteration's drafts (``shadow_influence``), read back.

Each seed runs ``infuser fit --config CONFIG`` once (one thread, its own world instance with
``--world_instances``: the rule world's documents, target and held-out sets drawn from the seed,
as the curriculum benchmark's profiles do), with the run's own estimator rewarding the Generator
and the shadows scoring the same questions at the same Solver state. From each run's
``metrics.csv``, per shadow estimator, means over its iterations:

* ``spearman``: rank correlation with the run's own scores over the questions with signal;
* ``top_choice``: the share of documents whose best-scored draft both name (DuGRPO compares a
  document's drafts among themselves, so this is what would change the Generator's update);
* ``same_kind``: the share of iterations in which both give the highest mean score to the same
  question kind (``shadow/<name>/kind/<kind>``), and which kind each prefers how often.

Every figure is a mean over seeds with its 95% t interval. The shadows change nothing in the runs
(their questions, metrics and weights are those of runs without them; tests/test_shadow_influence.py).

    python -m benchmarks.research.shadow_influence --seeds 0 1 2 3 4 --world_instances \\
        --json docs/results/shadow_influence_rules.json
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infuser.artifacts import write_json
from infuser.bench.common import mean_interval, print_table

ROOT = Path(__file__).resolve().parents[2]
SHADOWS = "{tracin: tracin, tracin_cosine: {class_path: tracin, init_args: {cosine: true}}}"
WORLD_KEYS = ("documents.init_args.world_seed", "target_set.init_args.world_seed", "heldout_set.init_args.world_seed")


def _run(config: str, seed: int, world_instances: bool, extra: list[str], run_dir: Path) -> list[dict[str, str]]:
    """One INFUSER run with the shadows; its metrics rows."""
    command = [sys.executable, "-m", "infuser.cli", "fit", "--config", config, "--seed", str(seed),
               "--trainer.threads", "1", "--run_dir", str(run_dir), "--shadow_influence", SHADOWS, *extra]
    if world_instances:
        command += [argument for key in WORLD_KEYS for argument in (f"--{key}", str(seed))]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _preferred_kind(row: dict[str, str], prefix: str) -> str | None:
    means = {key.rsplit("/", 1)[1]: float(value) for key, value in row.items()
             if key.startswith(f"{prefix}/kind/") and value}
    return max(means, key=means.get) if means else None


def summarise(rows: list[dict[str, str]], shadow: str) -> dict:
    """One run's agreement of ``shadow`` with the run's own estimator, over its iterations."""
    scored = [row for row in rows if row.get(f"shadow/{shadow}/spearman")]
    own = [_preferred_kind(row, "shadow/influence") for row in scored]
    theirs = [_preferred_kind(row, f"shadow/{shadow}") for row in scored]
    return {"iterations": len(scored),
            "spearman": sum(float(row[f"shadow/{shadow}/spearman"]) for row in scored) / len(scored),
            "top_choice": sum(float(row[f"shadow/{shadow}/top_choice_agreement"]) for row in scored) / len(scored),
            "same_kind": sum(a == b for a, b in zip(own, theirs)) / len(scored),
            "preferred_own": dict(Counter(own)), "preferred_shadow": dict(Counter(theirs))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/rules.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--world_instances", action="store_true",
                        help="seed s runs the rule world's instance s (documents, target and held-out sets)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("extra", nargs="*", help="further `infuser fit` options, after --")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="infuser-shadow-") as scratch, ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda seed: _run(args.config, seed, args.world_instances, args.extra,
                                               Path(scratch) / f"seed{seed}"), args.seeds))
    shadows = sorted({key.split("/")[1] for key in runs[0][0] if key.startswith("shadow/")} - {"influence"})
    results = {}
    for shadow in shadows:
        per_seed = [summarise(rows, shadow) for rows in runs]
        results[shadow] = {"per_seed": dict(zip(map(str, args.seeds), per_seed)),
                           **{figure: mean_interval([run[figure] for run in per_seed]).within(-1.0, 1.0).as_dict()
                              for figure in ("spearman", "top_choice", "same_kind")},
                           "preferred_own": dict(sum((Counter(run["preferred_own"]) for run in per_seed), Counter())),
                           "preferred_shadow": dict(sum((Counter(run["preferred_shadow"]) for run in per_seed),
                                                       Counter()))}
    print_table(["shadow", "spearman", "top choice", "same kind", "own prefers", "shadow prefers"],
                [[name, _text(r["spearman"]), _text(r["top_choice"]), _text(r["same_kind"]),
                  _counts(r["preferred_own"]), _counts(r["preferred_shadow"])] for name, r in results.items()],
                title=f"{args.config}, seeds {args.seeds}: shadow estimators against the run's own influence "
                      f"(means over seeds, 95% t intervals)")
    if args.json:
        write_json(Path(args.json), {"config": args.config, "seeds": args.seeds,
                                     "world_instances": args.world_instances, "extra": args.extra,
                                     "shadows": SHADOWS, "results": results})


def _text(interval: dict[str, float]) -> str:
    return f"{interval['mean']:.3f} [{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]"


def _counts(counts: dict[str | None, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items(), key=lambda item: -item[1]))


if __name__ == "__main__":
    main()
