"""Rollout, update and influence throughput of a role on randomly initialised Qwen3-shaped models.

    python -m benchmarks.gpu_throughput --shapes qwen3-0.6b qwen3-1.7b --device cuda --json gpu_throughput.json

Per shape (``benchmarks/model_shapes.py``): a model of that shape is initialised at random, saved
with ``save_pretrained`` together with a tokenizer built here (``model_shapes.build_checkpoint``:
the toy tokenizer's words padded to the shape's vocabulary, so nothing is downloaded), and loaded back through infuser's own path (``PolicyRole``:
``load_causal_lm``, then ``fabric.setup`` as ``infuser fit`` does). Then, timed separately:

* **rollout**: ``PolicyRole.rollout`` (``infuser.rollout.engine.generate``) of ``--prompts``
  random prompts of ``--prompt_tokens`` tokens, ``--samples`` completions each, at most
  ``--max_new_tokens`` tokens (a random model rarely emits EOS, so rows run to the budget);
* **generate** (the reference): transformers' ``model.generate`` on the same prompts, as many
  samples each, the same budget, temperature 1 (its usual sampling, prompts repeated and prefilled
  per row); ``sampler_vs_generate`` is the ratio of generated tokens per second;
* **update**: one ``PolicyRole.update`` (forward, backward and AdamW step) on those rollouts, with
  random normal advantages (so every row carries gradient and is forwarded);
* **influence**: ``OptimizerAwareInfluence`` (preconditioned cosine) ``prepare`` on the first
  ``--target_prompts`` prompts' rollouts, then ``score`` of ``--candidates`` candidates (one
  prompt's ``--samples`` rows each), after the update, so AdamW's state exists as in the loop.

A warm-up rollout and update on two short rows come first (kernel selection, allocator growth).
Reported per stage: throughput in tokens per second (generated tokens for the rollout, completion
tokens for the update and influence) and model FLOPs utilisation, MFU = model FLOPs / seconds /
``--peak_tflops``. Model FLOPs are 2N per token for a forward pass (rollout) and 6N for a forward
and backward pass (update, influence), N the weights of the matrix multiplications a token goes
through: every token through the decoder's linear layers, and only completion tokens through the
output projection as well (infuser never projects a prompt position onto the vocabulary, except
the last one while sampling). Tokens are those actually run: the distinct prompts once (a group
shares one pass of its prompt, unless gradient checkpointing turns that off) plus the completions;
padding, embedding lookups and attention scores are not counted, as usual for MFU. Peak memory per
stage: CUDA's ``max_memory_allocated`` (reset before each stage); on CPU, the process's maximum
resident set size from ``getrusage`` (over the whole process so far, not per stage).

The default ``--peak_tflops`` is 989.4, the dense (no 2:4 sparsity) bfloat16 tensor-core peak of
an H100/H200 SXM (NVIDIA lists 1,979 TFLOPS with sparsity); pass your GPU's for another one. Models
run in ``--dtype`` throughout (Fabric's ``32-true`` plugin: no autocast, no cast of the module).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import lightning as L
import torch
import transformers

from benchmarks.model_shapes import SHAPES, ModelShape, build_checkpoint, random_prompts, report

H200_DENSE_BF16_TFLOPS = 989.4
Result = TypeVar("Result")


@dataclass
class Settings:
    """The command-line settings (see ``--help``), recorded with every result."""

    device: str
    dtype: str
    prompts: int
    samples: int
    prompt_tokens: int
    max_new_tokens: int
    micro_batch_size: int
    target_prompts: int
    candidates: int
    attn_implementation: str
    gradient_checkpointing: bool
    peak_tflops: float
    seed: int


@dataclass
class Stage:
    """One timed stage: seconds, tokens, throughput, MFU and peak memory."""

    seconds: float
    tokens: int  # the tokens the throughput is quoted in (generated / completion tokens)
    run_tokens: int  # every token the model ran: distinct prompts + completions
    tflop: float  # model FLOPs of the stage / 1e12
    tokens_per_s: float
    mfu: float
    peak_memory_gib: float


@dataclass
class Record:
    """One shape's measurements, with what they were measured on and how."""

    date: str
    hardware: str
    torch: str
    transformers: str
    shape: dict
    decoder_linear_parameters: int
    output_projection_parameters: int
    settings: Settings
    peak_memory_kind: str
    rollout: Stage
    generate: Stage  # transformers' model.generate on the same prompts
    sampler_vs_generate: float  # rollout tokens/s over generate's
    update: Stage
    influence_prepare: Stage
    influence_score: Stage
    seconds_per_candidate: float


def hardware(device: torch.device) -> str:
    """The accelerator's name, or the CPU's with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Result], device: torch.device) -> tuple[Result, float, float]:
    """``run()``'s result, its seconds and the peak memory in GiB (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _synchronize(device)
    started = time.perf_counter()
    result = run()
    _synchronize(device)
    seconds = time.perf_counter() - started
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return result, seconds, peak / 2**30


def stage(shape: ModelShape, passes: int, seconds: float, run_tokens: int, completion_tokens: int,
          peak_tflops: float, peak_gib: float) -> Stage:
    """A stage's record; ``passes`` is 2 for a forward pass, 6 for forward and backward."""
    flops = passes * (shape.decoder_linear_parameters * run_tokens
                      + shape.lm_head_matmul_parameters * completion_tokens)
    return Stage(seconds=round(seconds, 6), tokens=completion_tokens, run_tokens=run_tokens,
                 tflop=flops / 1e12, tokens_per_s=round(completion_tokens / seconds, 2),
                 mfu=round(flops / seconds / (peak_tflops * 1e12), 5), peak_memory_gib=round(peak_gib, 3))


def _prompt_tokens(batch, rows: torch.Tensor | None = None) -> int:
    """Tokens of the distinct prompts among ``rows`` (each is run once for its whole group)."""
    index = batch.prompt_index if rows is None else batch.prompt_index[rows]
    mask = batch.prompt_mask.cpu()
    firsts = [int((batch.prompt_index == p).nonzero()[0]) for p in index.unique().tolist()]
    return int(mask[firsts].sum())


def reference_generate(role, shape: ModelShape, prompts: list[str], settings: Settings, device: torch.device) -> Stage:
    """transformers' ``model.generate`` on ``prompts``, ``settings.samples`` samples each (see the
    module docstring); tokens are the generated ones up to each row's EOS."""
    tokenizer = role.tokenizer
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    model = role.model

    def run():
        model.eval()
        with torch.no_grad():
            return model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                  max_new_tokens=settings.max_new_tokens, num_return_sequences=settings.samples,
                                  pad_token_id=tokenizer.pad_token_id)

    sequences, seconds, peak = timed(run, device)
    model.train()
    completions = sequences[:, inputs["input_ids"].size(1):]
    ended = (completions == tokenizer.eos_token_id).cumsum(-1) > 0  # from the first EOS on: padding
    generated = int((~ended).sum() + ended.any(-1).sum())  # each stopped row's EOS counts, as in the rollout
    prompt_tokens = int(inputs["attention_mask"].sum()) * settings.samples  # prefilled once per row
    return stage(shape, 2, seconds, prompt_tokens + generated, generated, settings.peak_tflops, peak)


def measure(shape: ModelShape, settings: Settings, model_dir: Path | None = None) -> Record:
    """Load and time one shape (see the module docstring): from ``model_dir`` (a checkpoint of
    :func:`model_shapes.build_checkpoint`), or built here."""
    if model_dir is None:
        with tempfile.TemporaryDirectory(prefix="infuser-gpu-throughput-") as directory:
            build_checkpoint(shape, Path(directory), settings.dtype, settings.device, settings.seed)
            return measure(shape, settings, Path(directory))
    from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig, UpdateConfig
    from infuser.influence.optimizer_aware import OptimizerAwareInfluence
    from infuser.model_config import ModelConfig
    from infuser.rl.update import PolicyUpdate
    from infuser.roles.policy import PolicyRole
    from infuser.rollout.rows import ScoredRollouts

    device = torch.device(settings.device)
    generator = torch.Generator().manual_seed(settings.seed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    config = RoleConfig(
        model=ModelConfig(name_or_path=str(model_dir), dtype=settings.dtype,
                          attn_implementation=settings.attn_implementation,
                          gradient_checkpointing=settings.gradient_checkpointing),
        optimizer=OptimizerConfig(lr=1e-6),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=settings.max_new_tokens,
                                batch_size=settings.prompts * settings.samples),
        update=UpdateConfig(micro_batch_size=settings.micro_batch_size),
    )
    role = PolicyRole(config, device=device)
    fabric = L.Fabric(accelerator=device.type, devices=1, precision="32-true")
    update = PolicyUpdate.set_up(fabric, role)

    warm = role.rollout(random_prompts(1, 8, generator), 2, generator,
                        SamplingConfig(temperature=1.0, max_new_tokens=4))
    update(warm, torch.randn(len(warm), generator=generator))

    prompts = random_prompts(settings.prompts, settings.prompt_tokens, generator)
    batch, seconds, peak = timed(lambda: role.rollout(prompts, settings.samples, generator), device)
    generated = int(batch.completion_mask.sum())
    rollout = stage(shape, 2, seconds, _prompt_tokens(batch) + generated, generated, settings.peak_tflops, peak)
    reference = reference_generate(role, shape, prompts, settings, device)

    advantages = torch.randn(len(batch), generator=generator)
    prefill = _prompt_tokens(batch) if not settings.gradient_checkpointing else int(batch.prompt_mask.sum())
    _, seconds, peak = timed(lambda: update(batch, advantages), device)
    update = stage(shape, 6, seconds, prefill + generated, generated, settings.peak_tflops, peak)

    def rows_of(prompt: int) -> torch.Tensor:
        return (batch.prompt_index == prompt).nonzero().squeeze(-1)

    def scored(rows: torch.Tensor) -> ScoredRollouts:
        return ScoredRollouts(batch.select(rows), advantages[rows])

    def completions(rows: torch.Tensor) -> int:
        return int(batch.completion_mask[rows.to(batch.completion_mask.device)].sum())

    target_rows = torch.cat([rows_of(p) for p in range(settings.target_prompts)])
    candidate_rows = [rows_of(p % settings.prompts) for p in range(settings.candidates)]
    estimator = OptimizerAwareInfluence()
    _, seconds, peak = timed(lambda: estimator.prepare(role, scored(target_rows)), device)
    prepare = stage(shape, 6, seconds, _prompt_tokens(batch, target_rows) + completions(target_rows),
                    completions(target_rows), settings.peak_tflops, peak)
    candidates = [scored(rows) for rows in candidate_rows]
    _, seconds, peak = timed(lambda: estimator.score(role, candidates), device)
    scored_completions = sum(completions(rows) for rows in candidate_rows)
    score = stage(shape, 6, seconds, sum(_prompt_tokens(batch, rows) for rows in candidate_rows) + scored_completions,
                  scored_completions, settings.peak_tflops, peak)
    return Record(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), hardware=hardware(device),
        torch=torch.__version__, transformers=transformers.__version__, shape=shape.as_dict(),
        decoder_linear_parameters=shape.decoder_linear_parameters,
        output_projection_parameters=shape.lm_head_matmul_parameters, settings=settings,
        peak_memory_kind=("torch.cuda.max_memory_allocated per stage" if device.type == "cuda"
                          else "CPU: getrusage max RSS of the process so far (not per stage)"),
        rollout=rollout, generate=reference, sampler_vs_generate=round(rollout.tokens_per_s / reference.tokens_per_s, 3),
        update=update, influence_prepare=prepare, influence_score=score,
        seconds_per_candidate=round(score.seconds / settings.candidates, 4),
    )


def table(records: list[Record]) -> str:
    """One row per shape, Markdown."""
    lines = ["| shape | rollout tok/s | generate tok/s | sampler vs generate | update tok/s | update MFU | "
             "influence prepare s | s/candidate | influence MFU | peak GiB rollout / update / influence |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        peaks = " / ".join(f"{s.peak_memory_gib:.1f}" for s in (r.rollout, r.update, r.influence_score))
        lines.append(f"| {r.shape['name']} | {r.rollout.tokens_per_s:,.0f} | {r.generate.tokens_per_s:,.0f} | "
                     f"{r.sampler_vs_generate:.2f}x | "
                     f"{r.update.tokens_per_s:,.0f} | {r.update.mfu:.1%} | {r.influence_prepare.seconds:.2f} | "
                     f"{r.seconds_per_candidate:.3f} | {r.influence_score.mfu:.1%} | {peaks} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Record]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["qwen3-0.6b", "qwen3-1.7b"], choices=list(SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--prompts", type=int, default=16, help="distinct prompts of the rollout")
    parser.add_argument("--samples", type=int, default=8, help="completions per prompt (a GRPO group)")
    parser.add_argument("--prompt_tokens", type=int, default=512)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--micro_batch_size", type=int, default=16, help="rows per forward/backward of the update")
    parser.add_argument("--target_prompts", type=int, default=4, help="prompts whose rows form the influence target")
    parser.add_argument("--candidates", type=int, default=8, help="influence candidates (one prompt's rows each)")
    parser.add_argument("--attn_implementation", default="sdpa")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--peak_tflops", type=float, default=H200_DENSE_BF16_TFLOPS,
                        help="the device's peak for --dtype, for MFU (default: H100/H200 SXM dense bf16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the records as JSON to this path")
    options = vars(parser.parse_args(argv))
    shapes, json_path = options.pop("shapes"), options.pop("json")
    settings = Settings(**options)
    if not 1 <= settings.target_prompts <= settings.prompts:
        parser.error("--target_prompts must be between 1 and --prompts")
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    records = [measure(SHAPES[name], settings) for name in shapes]
    report(table(records), records, json_path)
    return records


if __name__ == "__main__":
    main()
