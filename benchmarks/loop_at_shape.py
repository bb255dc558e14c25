"""``infuser fit`` at a model shape with random weights: peak memory per stage beside its estimate.

    python -m benchmarks.loop_at_shape --shapes m10 m40 --json loop_at_shape.json          # CPU, float32
    python -m benchmarks.loop_at_shape --shapes qwen3-0.6b qwen3-1.7b --device cuda --precision bf16-true

Per shape (``benchmarks/model_shapes.py``) both roles are a randomly initialised model of that
shape, built and saved here and loaded through infuser's own ``from_pretrained`` path, and the
real loop runs: :func:`infuser.fit.fit` with its checkpointing, evaluation and loggers. Random
weights draft nothing valid and earn no reward, so two stand-ins keep every stage working on
real tensors of the real size:

* the Generator samples its drafts as usual (its update trains on them), but a draft that does
  not parse is replaced, for the Solver, by a question of the toy world (:class:`StandInGenerator`);
* the Solver's reward is the parity of a hash of its answer's text (:func:`model_shapes.hash_parity`),
  so pass rates are spread over ``[0, 1]`` and the target gradient, influence and both updates run.

Measured per loop stage (``infuser.loop.STAGES``): wall seconds, and peak memory above what the
process held before the run (the libraries): on CUDA ``torch.cuda.max_memory_allocated`` reset at
each stage; on CPU the resident anonymous memory (``RssAnon``) sampled every 2 ms, with large
allocations returned to the system as soon as they are freed (``mallopt``) and the heap trimmed at
each stage's start, so that it follows the live tensors rather than glibc's reuse of freed memory
(file-backed pages, such as those of the mapped weight files, are left out). Beside each: the
stage's estimate from ``benchmarks/memory_estimate.py`` for the same settings and lengths. The
peak stage is named for both.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import hashlib
import logging
import os
import random
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

import torch

from benchmarks import memory_estimate
from benchmarks.model_shapes import SHAPES, build_checkpoint, hash_parity, report

MIB = 2**20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@dataclass
class Settings:
    """The run's schedule and lengths (see ``--help``)."""

    device: str = "cpu"
    precision: str = "32-true"
    dtype: str = "float32"
    iterations: int = 2
    documents: int = 4
    questions: int = 4
    answers: int = 8
    target_questions: int = 8
    generator_tokens: int = 48
    solver_tokens: int = 45
    micro_batch_size: int = 16
    eval_samples: int = 1
    seed: int = 0


@dataclass
class StageRecord:
    stage: str
    seconds: float
    measured_mib: float  # peak above the libraries
    estimated_mib: float  # the estimate's persistent part plus this stage's
    ratio: float  # estimated / measured


@dataclass
class ShapeRecord:
    shape: dict
    settings: Settings
    device: str
    memory_kind: str
    libraries_mib: float  # what the process held before the run
    stages: list[StageRecord] = field(default_factory=list)
    measured_peak_stage: str = ""
    estimated_peak_stage: str = ""
    measured_peak_mib: float = 0.0
    estimated_peak_mib: float = 0.0
    tokens_per_s: dict[str, float] = field(default_factory=dict)


class StageMemory:
    """Peak memory per loop stage (see the module docstring); wraps ``InfuserLoop._stage``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peaks: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.loop = None
        self._stage: str | None = None
        self._libc = ctypes.CDLL("libc.so.6") if device.type == "cpu" else None
        self.baseline = 0

    def start(self) -> None:
        """Take the baseline; from now on, sample."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        self._libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)  # freed tensors go back to the system at once
        self._libc.malloc_trim(0)
        self.baseline = _anonymous_rss()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            stage = self._stage
            if stage is not None:
                self.peaks[stage] = max(self.peaks.get(stage, 0), _anonymous_rss() - self.baseline)
            time.sleep(0.002)

    @contextmanager
    def around(self, original, loop, name: str, *where):
        self.loop = loop
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._libc.malloc_trim(0)
        self._stage = name
        started = time.perf_counter()
        with original(loop, name, *where) as timing:
            yield timing
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self.baseline
            self.peaks[name] = max(self.peaks.get(name, 0), peak)
        else:
            self.peaks[name] = max(self.peaks.get(name, 0), _anonymous_rss() - self.baseline)
        self._stage = None
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def _anonymous_rss() -> int:
    """Resident anonymous memory of this process (``RssAnon``): heap and tensors. File-backed pages
    (the libraries' code, the pages of a ``safetensors`` file mapped while loading) are left out:
    the kernel can drop them, and nothing in the estimate corresponds to them."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no RssAnon line (not Linux?)")


def _stand_ins(settings: Settings):
    """The Generator and Solver of a random-weight run (see the module docstring)."""
    from infuser.data.questions import MCQuestion
    from infuser.roles.generator import Generator
    from infuser.roles.solver import Solver
    from infuser.rollout.rows import Answers, Drafts
    from infuser.toy.world import ToyWorld

    pool = ToyWorld().question_set("loop-at-shape", 256, seed=settings.seed)

    class StandInGenerator(Generator):
        """Drafts as a Generator does; a draft that does not parse becomes a toy-world question."""

        def draft(self, documents, questions_per_document, rng: random.Random, stream=None) -> Drafts:
            drafts = super().draft(documents, questions_per_document, rng, stream)
            parsed = [item if isinstance(item, MCQuestion) else pool[int(hashlib.sha256(text.encode()).hexdigest(), 16)
                                                                     % len(pool)]
                      for item, text in zip(drafts.parsed, drafts.rollouts.texts)]
            return Drafts(documents=drafts.documents, rollouts=drafts.rollouts, parsed=parsed)

    class HashParitySolver(Solver):
        """Answers as the Solver does; rewarded by the hash parity of each answer's text."""

        def answer(self, questions, num_samples, stream=None, sampling=None) -> Answers:
            answers = super().answer(questions, num_samples, stream, sampling)
            rewards = torch.tensor([hash_parity(text) for text in answers.rollouts.texts])
            return dataclasses.replace(answers, rewards=rewards)

    return StandInGenerator, HashParitySolver


def run_loop(model_dir: Path, settings: Settings, run_dir: Path, monitor: StageMemory):
    """``infuser fit`` on the model in ``model_dir`` (both roles), every stage measured by ``monitor``."""
    import infuser.roles.generator
    import infuser.roles.solver
    from infuser.advantages import DuGRPOAdvantage, MeanCentredAdvantage
    from infuser.config import LoopConfig, OptimizerConfig, RoleConfig, SamplingConfig, TrainerConfig, UpdateConfig
    from infuser.fit import fit
    from infuser.influence.optimizer_aware import OptimizerAwareInfluence
    from infuser.loop import InfuserLoop
    from infuser.model_config import ModelConfig
    from infuser.rl.generator_rewards import InfluenceReward
    from infuser.toy.sources import ToyDocuments, ToyQuestions

    def role(tokens: int, advantage) -> RoleConfig:
        return RoleConfig(model=ModelConfig(name_or_path=str(model_dir), dtype=settings.dtype),
                          optimizer=OptimizerConfig(lr=1e-5),
                          sampling=SamplingConfig(max_new_tokens=tokens),
                          update=UpdateConfig(micro_batch_size=settings.micro_batch_size), advantage=advantage)

    generator, solver = _stand_ins(settings)
    original = InfuserLoop._stage

    def stage(loop, name, *where):
        return monitor.around(original, loop, name, *where)

    loop = LoopConfig(iterations=settings.iterations, documents_per_iteration=settings.documents,
                      questions_per_document=settings.questions, answers_per_question=settings.answers,
                      target_answers_per_question=settings.answers, eval_samples=settings.eval_samples,
                      keep_checkpoints=1,
                      eval_sampling=SamplingConfig(temperature=0.7, max_new_tokens=settings.solver_tokens))
    accelerator = "cuda" if settings.device == "cuda" else "cpu"
    with mock.patch.object(infuser.roles.generator, "Generator", generator), \
            mock.patch.object(infuser.roles.solver, "Solver", solver), mock.patch.object(InfuserLoop, "_stage", stage):
        monitor.start()
        fit(generator=role(settings.generator_tokens, DuGRPOAdvantage()),
            solver=role(settings.solver_tokens, MeanCentredAdvantage()),
            documents=ToyDocuments(seed=settings.seed),
            target_set=ToyQuestions(split="target", size=settings.target_questions, seed=settings.seed),
            heldout_set=None, influence=OptimizerAwareInfluence(), generator_reward=InfluenceReward(), loop=loop,
            trainer=TrainerConfig(accelerator=accelerator, precision=settings.precision, loggers=["csv"]),
            run_dir=str(run_dir), seed=settings.seed)


def prompt_lengths(model_dir: Path, settings: Settings) -> tuple[int, int]:
    """The longest Generator and Solver prompts of the run, in tokens (the estimate's lengths)."""
    from infuser.data.prompts import PromptTemplates
    from infuser.model_config import ModelConfig
    from infuser.models import load_tokenizer
    from infuser.toy.sources import ToyDocuments, ToyQuestions
    from infuser.toy.world import ToyWorld

    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(model_dir)))
    templates = PromptTemplates()
    documents = ToyDocuments(seed=settings.seed).take(settings.documents * settings.iterations)
    questions = ToyQuestions(split="target", size=settings.target_questions, seed=settings.seed).load()
    questions += ToyWorld().question_set("loop-at-shape", 256, seed=settings.seed)

    def longest(texts: list[str]) -> int:
        return max(len(tokenizer(text).input_ids) for text in texts)

    return (longest([templates.for_generator(d.text) for d in documents]),
            longest([templates.for_solver(q) for q in questions]))


def estimate_arguments(model_dir: Path, settings: Settings) -> list[str]:
    """The ``benchmarks/memory_estimate.py`` command line of this run: its model, settings and lengths."""
    generator_prompt, solver_prompt = prompt_lengths(model_dir, settings)
    return ["--no_recipe", "--model", str(model_dir),
            "--generator_prompt_tokens", str(generator_prompt), "--solver_prompt_tokens", str(solver_prompt),
            "--generator_completion_tokens", str(settings.generator_tokens),
            "--solver_completion_tokens", str(settings.solver_tokens), "--documents", str(settings.documents),
            "--questions", str(settings.questions), "--answers", str(settings.answers),
            "--target_questions", str(settings.target_questions), "--eval_samples", str(settings.eval_samples),
            "--micro_batch_size", str(settings.micro_batch_size), "--set", f"trainer.precision={settings.precision}",
            "--set", f"generator.model.dtype={settings.dtype}", "--set", f"solver.model.dtype={settings.dtype}",
            "--set", f"trainer.accelerator={'cuda' if settings.device == 'cuda' else 'cpu'}"]


def measure(name: str, settings: Settings, model_dir: Path | None = None) -> ShapeRecord:
    """Run the loop on shape ``name`` (from ``model_dir``, a checkpoint of
    :func:`model_shapes.build_checkpoint`, or built here) and compare with the estimate."""
    shape = SHAPES[name]
    device = torch.device(settings.device)
    with tempfile.TemporaryDirectory(prefix=f"infuser-loop-{name}-") as directory:
        if model_dir is None:
            model_dir = build_checkpoint(shape, Path(directory) / "model", settings.dtype, settings.device,
                                         settings.seed)
        arguments = estimate_arguments(model_dir, settings)
        (recipe,), _ = memory_estimate.parse(arguments)
        estimate = memory_estimate.estimate(recipe)
        monitor = StageMemory(device)
        run_loop(model_dir, settings, Path(directory) / "run", monitor)
        history = monitor.loop.state.history
    record = ShapeRecord(shape=shape.as_dict(), settings=settings, device=str(device),
                         memory_kind=("torch.cuda.max_memory_allocated above the allocation before the run"
                                      if device.type == "cuda" else "RssAnon above the libraries (sampled every 2 ms)"),
                         libraries_mib=round(monitor.baseline / MIB, 1))
    persistent = sum(estimate.persistent.values())
    for stage, measured in monitor.peaks.items():
        estimated = persistent + estimate.stages[stage]
        record.stages.append(StageRecord(stage=stage, seconds=round(monitor.seconds[stage], 3),
                                         measured_mib=round(measured / MIB, 1), estimated_mib=round(estimated / MIB, 1),
                                         ratio=round(estimated / max(measured, 1), 3)))
    record.measured_peak_stage = max(monitor.peaks, key=monitor.peaks.get)
    record.measured_peak_mib = round(monitor.peaks[record.measured_peak_stage] / MIB, 1)
    record.estimated_peak_stage = estimate.peak_stage
    record.estimated_peak_mib = round(estimate.peak / MIB, 1)
    record.tokens_per_s = _throughput(history, monitor.seconds)
    return record


def _throughput(history: list[dict], seconds: dict[str, float]) -> dict[str, float]:
    """Completion tokens per second of sampling, of each update and of influence, over the run.

    Influence differentiates the answers of the questions with signal, the rows the Solver's
    update trains on (``solver/update_rows``): its tokens are counted as those rows'."""
    def mean(key: str) -> float:
        values = [row[key] for row in history if key in row]
        return sum(values) / len(values) if values else 0.0

    def tokens(role: str) -> float:
        return sum(row.get(f"{role}/update_rows", 0.0) * row.get(f"{role}/completions/mean_length", 0.0)
                   for row in history)

    rates = {"generate": mean("throughput/generator_tokens_per_s"), "solve": mean("throughput/solver_tokens_per_s"),
             "generator_update": tokens("generator") / max(seconds.get("generator_update", 0.0), 1e-9),
             "solver_update": tokens("solver") / max(seconds.get("solver_update", 0.0), 1e-9),
             "influence": tokens("solver") / max(seconds.get("influence", 0.0), 1e-9)}
    return {stage: round(value, 1) for stage, value in rates.items()}


def table(records: list[ShapeRecord]) -> str:
    """Measured and estimated peak per stage, one column pair per shape, Markdown."""
    stages = list(dict.fromkeys(s.stage for r in records for s in r.stages))
    header = "| stage | " + " | ".join(f"{r.shape['name']} measured MiB | estimate | est/meas" for r in records) + " |"
    lines = [header, "|---|" + "---|---|---|" * len(records)]
    for stage in stages:
        cells = []
        for r in records:
            found = next((s for s in r.stages if s.stage == stage), None)
            cells.append(f"{found.measured_mib:,.0f} | {found.estimated_mib:,.0f} | {found.ratio:.2f}" if found
                         else "- | - | -")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| **peak stage** | " + " | ".join(
        f"**{r.measured_peak_stage}** {r.measured_peak_mib:,.0f} | **{r.estimated_peak_stage}** "
        f"{r.estimated_peak_mib:,.0f} | {r.estimated_peak_mib / max(r.measured_peak_mib, 1e-9):.2f}" for r in records)
        + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[ShapeRecord]:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["m10", "m40"], choices=list(SHAPES))
    for key, value in asdict(defaults).items():
        parser.add_argument(f"--{key}", type=type(value), default=value)
    parser.add_argument("--json", type=Path, help="also write the records as JSON to this path")
    options = vars(parser.parse_args(argv))
    shapes, json_path = options.pop("shapes"), options.pop("json")
    settings = Settings(**options)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    records = [measure(name, settings) for name in shapes]
    report(table(records), records, json_path)
    return records


if __name__ == "__main__":
    main()
