"""Measure the rule world before comparing curricula on it: base pass rates, overlaps, headroom.

Three measurements, each printed as a table and written to ``--json``:

1. **The base Solver per kind**: the exact probability of the canonical answer at T=1 and T=0.7
   (mean over ``--questions`` held-out questions of each kind) and the sampled pass rate at T=1
   (``--samples`` answers each). The design asks for ~0.95 on one-digit sums and differences,
   ~0.5 on products (the distractor) and 0.15-0.2 on carry sums (the target rule).
2. **The base Generator** on the rule world's documents: valid drafts, golden answers right, and
   the kind mix of what it asks (the frozen Generator's curriculum).
3. **Overlaps**: operand sets shared by the held-out set and the target set, or the documents a
   run of ``configs/rules.yaml`` reads (must be none).

With ``--proxy_seeds``, a **proxy of the headroom gate**: for each seed, ``infuser fit --config
configs/rules.yaml`` once per arm: (a) the Solver trained by RL on target-rule questions themselves
(``loop.solver_data: target`` on a target set of carry sums only: a perfect curriculum's data),
(b) the frozen base Generator's questions, (c) the oracle and (d) the anti-oracle headroom arms
(``loop.scripted_drafts``: drafts written from each document's carry sum, or its product), then
the exact held-out accuracy of every final Solver (all held-out questions, and the carry ones
alone). Held-out operands are disjoint from the
target set's, so (a) or (c) beating (b) and (d) with a paired 95% interval above zero shows that
the rule transfers and that a curriculum has room to matter. Runs go one at a time (``--threads`` each).

    python -m benchmarks.research.rules_world --json runs/rules_world.json
    python -m benchmarks.research.rules_world --proxy_seeds 0 1 2 --json runs/rules_world.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from infuser.bench.common import paired_interval
from infuser.config import SamplingConfig
from infuser.data.documents import Document
from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion, parse_question
from infuser.models import ModelConfig, load_causal_lm, load_tokenizer
from infuser.rollout.engine import generate
from infuser.rollout.scoring import exact_probabilities
from infuser.toy.rules import RULE_KINDS, RuleDocuments, RuleQuestions, RuleWorld, RuleWorldConfig
from infuser.toy.world import fact_asked, facts_in

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "rules.yaml"
PROXY_ARMS = {
    "target-rule RL": ["--loop.solver_data=target", "--generator_reward=constant",
                       "--target_set.init_args.world={target_kind_weights: {carry: 1.0}}"],
    "frozen generator": ["--loop.freeze_generator=true", "--generator_reward=constant"],
    "oracle": ["--loop.scripted_drafts=oracle", "--loop.freeze_generator=true", "--generator_reward=constant"],
    "anti-oracle": ["--loop.scripted_drafts=anti_oracle", "--loop.freeze_generator=true",
                    "--generator_reward=constant"],
}


@dataclass
class KindRates:
    kind: str
    questions: int
    exact_t1: float
    exact_t07: float
    sampled_t1: float


@dataclass
class GeneratorDrafts:
    documents: int
    drafts: int
    valid_rate: float
    golden_accuracy: float
    kind_mix: dict[str, float]


@dataclass
class Overlap:
    heldout_operands: int
    target_operands: int
    document_operands: int
    shared_with_target: int
    shared_with_documents: int


@dataclass
class ProxyRun:
    arm: str
    seed: int
    heldout_exact_start: float
    heldout_exact_end: float
    heldout_carry_exact_start: float
    heldout_carry_exact_end: float
    heldout_sampled_start: float
    heldout_sampled_end: float
    seconds: float

    @property
    def gain(self) -> float:
        return self.heldout_exact_end - self.heldout_exact_start


def _operands(question_text: str) -> tuple[str, int, int]:
    fact = fact_asked(question_text)
    left, right = sorted((fact.left, fact.right)) if fact.kind in ("sum", "product") else (fact.left, fact.right)
    return fact.kind, left, right


def world_of(model: str) -> RuleWorldConfig:
    """The world a base was pretrained for (its recipe's ``world``; the default for other models):
    canonical answers must be worded as that base was taught to word them."""
    from infuser.models import resolve_path

    recipe = Path(resolve_path(model)) / "infuser_toy.json"
    if not recipe.exists():
        return RuleWorldConfig()
    return RuleWorldConfig(**json.loads(recipe.read_text())["recipe"]["world"])


def exact_accuracy(model, tokenizer, questions: list[MCQuestion], world: RuleWorldConfig,
                   temperature: float = 1.0) -> float:
    world = RuleWorld(world)
    templates = PromptTemplates()
    probabilities = exact_probabilities(model, tokenizer, [templates.for_solver(q) for q in questions],
                                        [world.canonical_completion(q) for q in questions], temperature)
    return float(probabilities.mean())


def base_solver(model, tokenizer, world: RuleWorldConfig, questions: int, samples: int, seed: int) -> list[KindRates]:
    templates = PromptTemplates()
    rates = []
    for kind in RULE_KINDS:
        drawn = RuleWorld(RuleWorldConfig(target_kind_weights={kind: 1.0})).question_set("heldout", questions, seed)
        rollouts = generate(model, tokenizer, [templates.for_solver(q) for q in drawn],
                            SamplingConfig(temperature=1.0, max_new_tokens=28), num_samples=samples,
                            stream=torch.Generator().manual_seed(seed))
        right = [drawn[row // samples].is_answered_by(text) for row, text in enumerate(rollouts.texts)]
        rates.append(KindRates(kind, questions, exact_accuracy(model, tokenizer, drawn, world, 1.0),
                               exact_accuracy(model, tokenizer, drawn, world, 0.7), sum(right) / len(right)))
    return rates


def base_generator(model, tokenizer, documents: int, seed: int) -> GeneratorDrafts:
    source = RuleDocuments(seed=seed, required_kinds=["carry"])
    taken: list[Document] = source.take(documents)
    rollouts = generate(model, tokenizer, [PromptTemplates().for_generator(d.text) for d in taken],
                        SamplingConfig(temperature=1.0, max_new_tokens=48), num_samples=4,
                        stream=torch.Generator().manual_seed(seed))
    parsed = [parse_question(text) for text in rollouts.texts]
    valid = [q for q in parsed if isinstance(q, MCQuestion)]
    kinds = Counter(source.question_kind(q) or "other" for q in valid)
    return GeneratorDrafts(documents, len(parsed), len(valid) / len(parsed),
                           sum(bool(source.golden_is_correct(q)) for q in valid) / max(len(valid), 1),
                           {kind: round(count / len(valid), 3) for kind, count in sorted(kinds.items())})


def overlap(documents: int) -> Overlap:
    heldout = {_operands(q.question) for q in RuleQuestions("heldout", 500).load()}
    target = {_operands(q.question) for q in RuleQuestions("target", 64).load()}
    stated = {_operands(f.question_text()) for d in RuleDocuments(seed=0, required_kinds=["carry"]).take(documents)
              for f in facts_in(d.text)}
    return Overlap(len(heldout), len(target), len(stated), len(heldout & target), len(heldout & stated))


def proxy_run(arm: str, seed: int, model: str, run_root: Path, threads: int, extra: list[str],
              heldout: list[MCQuestion], start: tuple[float, float]) -> ProxyRun:
    """One ``infuser fit`` of ``arm``; ``start`` is the base's exact (held-out, held-out carry) accuracy."""
    run_dir = run_root / f"{arm.replace(' ', '_')}-seed{seed}"
    command = [sys.executable, "-m", "infuser.cli", "fit", "--config", str(CONFIG), f"--seed={seed}",
               f"--documents.init_args.seed={seed}", f"--target_set.init_args.seed={seed}",
               f"--generator.model.name_or_path={model}", f"--solver.model.name_or_path={model}",
               f"--run_dir={run_dir}", *PROXY_ARMS[arm], *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    end_model, end_tokenizer = _load(str(run_dir / "final" / "solver"))
    carry = [q for q in heldout if q.kind == "carry"]
    world = world_of(model)
    return ProxyRun(arm, seed, start[0], exact_accuracy(end_model, end_tokenizer, heldout, world), start[1],
                    exact_accuracy(end_model, end_tokenizer, carry, world), summary["heldout_accuracy_start"],
                    summary["heldout_accuracy_end"], round(seconds, 1))


def _load(name_or_path: str):
    config = ModelConfig(name_or_path=name_or_path)
    return load_causal_lm(config), load_tokenizer(config)


def paired(runs: list[ProxyRun], first: str, second: str) -> dict[str, float]:
    """Mean over seeds of ``first``'s held-out gain minus ``second``'s, with its 95% t interval."""
    by_seed = {(run.arm, run.seed): run for run in runs}
    seeds = sorted({run.seed for run in runs})
    interval = paired_interval([by_seed[first, s].gain for s in seeds], [by_seed[second, s].gain for s in seeds])
    return {**interval.as_dict(), "n": len(seeds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:toy-rules")
    parser.add_argument("--questions", type=int, default=200, help="held-out questions per kind")
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per question")
    parser.add_argument("--documents", type=int, default=100, help="documents the base Generator drafts from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxy_seeds", type=int, nargs="*", default=[])
    parser.add_argument("--arms", nargs="*", default=[], choices=list(PROXY_ARMS), help="default: both")
    parser.add_argument("--skip_base", action="store_true", help="only the proxy runs")
    parser.add_argument("--proxy_args", nargs=argparse.REMAINDER, default=[],
                        help="further `infuser fit` arguments for every proxy run (last on the line)")
    parser.add_argument("--run_root", default="runs/rules_world")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    model, tokenizer = _load(args.model)
    world = world_of(args.model)
    record: dict = {"model": args.model, "world": asdict(world)}
    if not args.skip_base:
        rates = base_solver(model, tokenizer, world, args.questions, args.samples, args.seed)
        print(f"\nbase Solver ({args.model}), {args.questions} held-out questions per kind")
        print(f"{'kind':<12}{'exact T=1':>11}{'exact T=0.7':>13}{'sampled T=1':>13}")
        for r in rates:
            print(f"{r.kind:<12}{r.exact_t1:>11.3f}{r.exact_t07:>13.3f}{r.sampled_t1:>13.3f}")
        drafts = base_generator(model, tokenizer, args.documents, args.seed)
        print(f"\nbase Generator on {drafts.documents} documents x 4 drafts: valid {drafts.valid_rate:.3f}, golden "
              f"right {drafts.golden_accuracy:.3f}, kinds {drafts.kind_mix}")
        overlaps = overlap(documents=16 * 6 * 10)
        print(f"\noverlaps: {overlaps}")
        record.update(base_solver=[asdict(r) for r in rates], base_generator=asdict(drafts), overlap=asdict(overlaps))

    if args.proxy_seeds:
        heldout = RuleQuestions("heldout", 500).load()
        start = (exact_accuracy(model, tokenizer, heldout, world),
                 exact_accuracy(model, tokenizer, [q for q in heldout if q.kind == "carry"], world))
        runs = []
        for seed in args.proxy_seeds:
            for arm in args.arms or PROXY_ARMS:
                runs.append(proxy_run(arm, seed, args.model, Path(args.run_root), args.threads, args.proxy_args,
                                      heldout, start))
                r = runs[-1]
                print(f"{arm:<18} seed {seed}: held-out exact {r.heldout_exact_start:.3f} -> {r.heldout_exact_end:.3f} "
                      f"(carry {r.heldout_carry_exact_start:.3f} -> {r.heldout_carry_exact_end:.3f}), sampled "
                      f"{r.heldout_sampled_start:.3f} -> {r.heldout_sampled_end:.3f}, {r.seconds:.0f} s", flush=True)
        arms = {run.arm for run in runs}
        record["proxy_paired"] = {}
        for first, second in (("target-rule RL", "frozen generator"), ("oracle", "anti-oracle"),
                              ("oracle", "frozen generator")):
            if {first, second} <= arms:
                difference = paired(runs, first, second)
                record["proxy_paired"][f"{first} - {second}"] = difference
                print(f"held-out exact gain, {first} minus {second}: {difference['mean']:+.3f} (95% CI "
                      f"{difference['ci_low']:+.3f} .. {difference['ci_high']:+.3f}, n={difference['n']})")
        record.update(proxy_args=args.proxy_args, proxy=[{**asdict(r), "gain": r.gain} for r in runs])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
