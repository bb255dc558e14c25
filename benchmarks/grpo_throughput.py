"""GRPO throughput: infuser's Solver RL step against TRL's ``GRPOTrainer``, interleaved in one process.

Both sides train their own copy of the same local toy model on the same Solver prompts, with the
same group size, completion budget, batch, objective (``dapo`` token-mean, eps 0.2, no KL, group-std
advantages, one optimizer step per batch, grad clip 1.0, float32, no truncated importance weight
since TRL applies it only with vLLM) and reward (``--reward``). One step = generation + reward + update. TRL runs its ordinary
``train()``; after each TRL step a callback runs one infuser step, so the two alternate under the
same machine load and every TRL step is paired with the infuser step that follows it. The first
pair is warm-up and not counted.

    python -m benchmarks.grpo_throughput --json grpo_throughput.json
    python -m benchmarks.model_shapes m40 --out /tmp/m40       # random weights of a mid shape
    python -m benchmarks.grpo_throughput --model /tmp/m40 --reward hash_parity --completion_tokens 45

Rewards (``--reward``): ``correct``, the Solver's own (its boxed choice is the golden option), for
a model that can answer (the bundled toy base); ``hash_parity``, the parity of a hash of the
completion's text (``model_shapes.hash_parity``), which random weights earn half the time, so that
models of any shape (``benchmarks/model_shapes.py`` builds them) have work to do in every step.
``--completion_tokens`` is the completion budget of both sides (``max_new_tokens``); a random model
rarely emits EOS (about once in ``vocab`` tokens), so its completions are that long.

A ratio compares work with work: when a side did no update in a measured step (infuser skips an
update without a row of non-zero advantage; TRL's step then has zero advantages everywhere and
its gradient is zero), no ratio is reported, the reason is printed and written (``refused``), and
the command exits with status 1. A model that never earns ``correct`` needs ``hash_parity``.

Reported per framework: samples/s (completions per second of step time, median over steps), the
split between generation (+ reward) and update, the mean completion length, the fraction of rows
with a zero advantage (infuser does not forward them: they contribute exactly nothing), and the
peak resident-memory growth during a step (RSS sampled every 2 ms; freed heap is returned to the
OS before each step). The headline is ``ratio_vs_trl``: the median over pairs of infuser
samples/s / TRL samples/s. TRL's periodic logging runs after its step's timing window closes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import statistics
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import psutil
import torch

from benchmarks.model_shapes import hash_parity

REWARDS = ("correct", "hash_parity")


@dataclass
class Settings:
    model: str = "builtin:toy"
    reward: str = "correct"
    prompts: int = 8
    group: int = 8
    completion_tokens: int = 48
    pairs: int = 8
    lr: float = 1e-6
    seed: int = 0


@dataclass
class StepTime:
    seconds: float
    generation: float
    rows: int
    tokens: int
    zero_advantage: float  # fraction of rows whose advantage is 0 (no gradient from them)
    peak_rss_mb: float
    trained: bool = True  # an update with at least one row of non-zero advantage took place

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.seconds


@dataclass
class Summary:
    samples_per_s: float
    seconds_per_step: float
    generation_share: float
    update_share: float
    mean_completion_tokens: float
    zero_advantage_fraction: float
    peak_rss_growth_mb: float

    @classmethod
    def of(cls, steps: list[StepTime]) -> Summary:
        seconds = sum(s.seconds for s in steps)
        generation = sum(s.generation for s in steps)
        return cls(  # medians: a step that shared the CPU with another process must not dominate
            samples_per_s=round(statistics.median(s.samples_per_s for s in steps), 2),
            seconds_per_step=round(statistics.median(s.seconds for s in steps), 4),
            generation_share=round(generation / seconds, 3),
            update_share=round(1 - generation / seconds, 3),
            mean_completion_tokens=round(sum(s.tokens for s in steps) / sum(s.rows for s in steps), 2),
            zero_advantage_fraction=round(statistics.mean(s.zero_advantage for s in steps), 3),
            peak_rss_growth_mb=round(max(s.peak_rss_mb for s in steps), 1),
        )


@dataclass
class Result:
    settings: Settings
    torch_threads: int
    infuser: Summary
    trl: Summary
    ratio_vs_trl: float | None  # None: refused (see ``refused``)
    pair_ratios: list[float] = field(default_factory=list)
    refused: str = ""  # why no ratio is reported: a side did not do the work


class PeakRss:
    """Largest RSS growth over the value at ``start()``, sampled by a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._base = self._peak = 0
        self._running = False
        self._libc = ctypes.CDLL("libc.so.6")

    def start(self) -> None:
        self._libc.malloc_trim(0)  # hand freed heap back, so growth is this step's, not a reuse
        self._base = self._peak = self._process.memory_info().rss
        self._running = True
        threading.Thread(target=self._sample, daemon=True).start()

    def stop(self) -> float:
        self._running = False
        return (max(self._peak, self._process.memory_info().rss) - self._base) / 2**20

    def _sample(self) -> None:
        while self._running:
            self._peak = max(self._peak, self._process.memory_info().rss)
            time.sleep(self._interval)


def _questions(settings: Settings):
    from infuser.toy.world import ToyWorld

    return ToyWorld().question_set("grpo-benchmark", settings.prompts * (settings.pairs + 1), seed=settings.seed)


class InfuserSide:
    """A Solver set up through Fabric, as ``infuser fit`` does; one RL step per call."""

    def __init__(self, settings: Settings, model_dir: str) -> None:
        from infuser.advantages import GroupStdAdvantage
        from infuser.config import OptimizerConfig, PolicyLossConfig, RoleConfig, SamplingConfig, UpdateConfig
        from infuser.data.prompts import PromptTemplates
        from infuser.model_config import ModelConfig
        from infuser.rl.update import PolicyUpdate
        from infuser.roles.solver import Solver

        config = RoleConfig(
            model=ModelConfig(name_or_path=model_dir),
            optimizer=OptimizerConfig(lr=settings.lr, weight_decay=0.0, grad_clip=1.0),
            sampling=SamplingConfig(temperature=1.0, max_new_tokens=settings.completion_tokens),
            update=UpdateConfig(loss=PolicyLossConfig(loss_type="dapo", importance_cap=None),
                                micro_batch_size=settings.prompts * settings.group),
            advantage=GroupStdAdvantage(),
        )
        fabric = L.Fabric(accelerator="cpu", devices=1)
        self.solver = Solver(config, PromptTemplates())
        self.update = PolicyUpdate.set_up(fabric, self.solver)
        self.settings = settings
        self.questions = _questions(settings)
        self.sampler = torch.Generator().manual_seed(settings.seed)
        self.reward = settings.reward

    def step(self, index: int, memory: PeakRss) -> StepTime:
        questions = self.questions[index * self.settings.prompts : (index + 1) * self.settings.prompts]
        memory.start()
        started = time.perf_counter()
        answers = self.solver.answer(questions, self.settings.group, self.sampler)
        rewards = answers.rewards if self.reward == "correct" else \
            torch.tensor([hash_parity(text) for text in answers.batch.texts])
        generated = time.perf_counter()
        advantages = self.solver.advantages(rewards, answers.batch.prompt_index)
        stats = self.update(answers.batch, advantages)
        finished = time.perf_counter()
        return StepTime(seconds=finished - started, generation=generated - started, rows=len(answers.batch),
                        tokens=int(answers.batch.completion_mask.sum()),
                        zero_advantage=float((advantages == 0).float().mean()), peak_rss_mb=memory.stop(),
                        trained=stats.optimizer_steps > 0)


def run(settings: Settings) -> Result:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from infuser.data.prompts import PromptTemplates
    from infuser.models import resolve_path

    model_dir = resolve_path(settings.model)
    torch.manual_seed(settings.seed)
    infuser = InfuserSide(settings, model_dir)
    templates = PromptTemplates()
    questions = _questions(settings)
    by_prompt = {templates.for_solver(q): q for q in questions}
    dataset = Dataset.from_dict({"prompt": list(by_prompt)})

    def reward(prompts: list[str], completions: list[str], **_) -> list[float]:
        """The Solver's reward (its boxed choice is the golden option), or the hash parity."""
        if settings.reward == "hash_parity":
            return [hash_parity(text) for text in completions]
        return [float(by_prompt[prompt].is_answered_by(text)) for prompt, text in zip(prompts, completions)]

    rows = settings.prompts * settings.group
    args = GRPOConfig(
        output_dir="/tmp/grpo-throughput-trl", report_to="none", use_cpu=True, save_strategy="no", bf16=False,
        gradient_checkpointing=False, per_device_train_batch_size=rows, num_generations=settings.group,
        max_completion_length=settings.completion_tokens, temperature=1.0, learning_rate=settings.lr,
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, loss_type="dapo", beta=0.0,
        scale_rewards="group", shuffle_dataset=False, max_steps=settings.pairs + 1, logging_steps=10,
        seed=settings.seed, disable_tqdm=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward, args=args,
                          train_dataset=dataset, processing_class=tokenizer)

    generation_seconds, tokens, zero_advantage = [0.0], [0], [0.0]
    generate_and_score = trainer._generate_and_score_completions

    def timed_generate_and_score(inputs):
        started = time.perf_counter()
        output = generate_and_score(inputs)
        generation_seconds[0] += time.perf_counter() - started
        tokens[0] = int(output["completion_mask"].sum())
        zero_advantage[0] = float((output["advantages"] == 0).float().mean())
        return output

    trainer._generate_and_score_completions = timed_generate_and_score
    memory = PeakRss()
    trl_steps: list[StepTime] = []
    infuser_steps: list[StepTime] = []

    class Interleave(TrainerCallback):
        """Times each TRL step (generation to optimizer step) and runs one infuser step after it."""

        begin = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            memory.start()
            generation_seconds[0] = 0.0
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds = time.perf_counter() - self.begin
            trl_steps.append(StepTime(seconds=seconds, generation=generation_seconds[0], rows=rows, tokens=tokens[0],
                                      zero_advantage=zero_advantage[0], peak_rss_mb=memory.stop(),
                                      trained=zero_advantage[0] < 1.0))
            infuser_steps.append(infuser.step(len(infuser_steps), memory))

    trainer.add_callback(Interleave())
    trainer.train()
    measured_trl, measured_infuser = trl_steps[1:], infuser_steps[1:]
    ratios = [ours.samples_per_s / theirs.samples_per_s for ours, theirs in zip(measured_infuser, measured_trl)]
    refused = refusal(measured_infuser, measured_trl, settings.reward)
    return Result(settings=settings, torch_threads=torch.get_num_threads(), infuser=Summary.of(measured_infuser),
                  trl=Summary.of(measured_trl), ratio_vs_trl=None if refused else round(statistics.median(ratios), 3),
                  pair_ratios=[round(r, 3) for r in ratios], refused=refused)


def refusal(infuser: list[StepTime], trl: list[StepTime], reward: str) -> str:
    """Why the ratio would compare work with no work ("" when both sides trained in every step)."""
    idle = [f"{name} did no update in {sum(not s.trained for s in steps)} of {len(steps)} measured steps"
            for name, steps in (("infuser", infuser), ("TRL", trl)) if not all(s.trained for s in steps)]
    if not idle:
        return ""
    hint = " (the model never earns the 'correct' reward: use --reward hash_parity)" if reward == "correct" else ""
    return "; ".join(idle) + " : every row of such a step had advantage 0, so its update is no work" + hint


def _table(result: Result) -> str:
    rows = [("samples/s", "samples_per_s"), ("s/step", "seconds_per_step"), ("generation share", "generation_share"),
            ("update share", "update_share"), ("completion tokens", "mean_completion_tokens"),
            ("zero-advantage rows", "zero_advantage_fraction"),
            ("peak RSS growth MB", "peak_rss_growth_mb")]
    lines = [f"{'':<20}{'infuser':>12}{'TRL':>12}"]
    for label, key in rows:
        lines.append(f"{label:<20}{getattr(result.infuser, key):>12}{getattr(result.trl, key):>12}")
    if result.refused:
        lines.append(f"ratio_vs_trl: not reported: {result.refused}")
    else:
        lines.append(f"ratio_vs_trl (median of {len(result.pair_ratios)} pairs): {result.ratio_vs_trl}")
    return "\n".join(lines)


def main() -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(defaults).items():
        spellings = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"])
        parser.add_argument(*spellings, dest=name, type=type(value), default=value,
                            choices=REWARDS if name == "reward" else None)
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this path")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    options = vars(parser.parse_args())
    json_path, threads = options.pop("json"), options.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_flush_denormal(True)  # as `infuser fit` does; applies to both sides
    result = run(Settings(**options))
    print(_table(result))
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(result), indent=2) + "\n")
        print(f"written to {json_path}")
    if result.refused:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
