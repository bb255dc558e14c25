"""The GPU check: the CUDA-marked tests, and each stage of the loop at Qwen3-0.6B and 1.7B shapes, in
one command of about 8 minutes on an H100, writing a JSON record and a Markdown table.

    python3 -m benchmarks.gpu_check --out gpu_check                     # gpu_check.json, gpu_check.md
    python -m benchmarks.gpu_check --device cpu --shapes tiny --quick --out /tmp/check   # the CPU test

Parts, most important first. Each is written to the JSON as soon as it finishes (a run cut short
keeps what it did), a part that fails records its error and the next one runs, and a part that
would start after ``--budget_s`` is skipped and says so:

1. the environment: device, versions, and the packages infuser needs that are missing;
2. the tests marked ``cuda`` (``tests/test_cuda.py``: a bfloat16 update, the sampler's KV cache
   against ``model.generate``, a 4-bit base shared by two LoRA roles, influence vectors on the
   device), each test's outcome;
3. per shape (``benchmarks/model_shapes.py``; random weights built once per shape):
   ``benchmarks/gpu_throughput.py``'s stages (rollout against transformers' ``model.generate``,
   one update with its MFU, influence ``prepare`` and ``score``), then
   ``benchmarks/loop_at_shape.py``: ``infuser fit`` for 2 iterations in bfloat16 (``bf16-true``)
   with the hash-parity reward, peak GPU memory per stage beside its estimate, tokens/s per stage.

The goals it reports: update MFU >= 40% at the 1.7B shape, the sampler at least as fast as
``model.generate``, and every stage's memory estimate within 15% of the measured peak with the
peak stage named right.

On a lent machine (``/work/.library/device``: torch, transformers, peft and lightning are there,
nothing can be downloaded) infuser runs from ``src/`` (this script puts it on ``sys.path``); carry
what the image lacks as wheels, from the repository root here::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl jsonargparse==4.53.0 bitsandbytes==0.50.2        # 0.1 MB and 43 MB: under the 64 MiB carry

and run (``carry: [".whl"]``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
        PYTHONPATH=/tmp/site python3 -m benchmarks.gpu_check --out $OUT/gpu_check

Without bitsandbytes the 4-bit test is skipped (and reported so); without jsonargparse the loop
parts cannot import ``infuser.fit`` and are reported as such.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # runs from a checkout without installing infuser
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

NEEDED = ("lightning", "transformers", "peft", "tokenizers", "safetensors", "yaml", "tqdm", "jsonargparse")
OPTIONAL = ("bitsandbytes",)  # the 4-bit test skips without it
MFU_GOAL, ESTIMATE_TOLERANCE = 0.40, 0.15


@dataclass
class Part:
    """One part of the check: what it produced, or why it did not."""

    name: str
    status: str  # "ok", "failed", "skipped"
    seconds: float = 0.0
    detail: str = ""
    result: object = None  # a dict, or a benchmark's record (a dataclass)


@dataclass
class Check:
    date: str
    settings: dict
    parts: list[Part] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)


def environment(device: str) -> dict:
    """Versions, the device, and what is missing."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    absent = [name for name in OPTIONAL if importlib.util.find_spec(name) is None]
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU",
            "cuda": torch.version.cuda, "missing": missing, "optional_missing": absent}


def cuda_tests(timeout: float) -> dict:
    """``pytest -m cuda`` on the CUDA tests, in a child process; each test's outcome."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "junit.xml"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                          os.environ.get("PYTHONPATH")]))}
        completed = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", str(REPO / "tests" / "test_cuda.py"),
                                    "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
                                   cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        outcomes = {}
        if report.exists():
            for case in ElementTree.parse(report).getroot().iter("testcase"):
                problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped"}.get(
                    problem.tag if problem is not None else "", "passed")
                outcomes[case.get("name")] = {"outcome": outcome,
                                              "message": (problem.get("message") or "")[:300] if problem is not None
                                              else ""}
    return {"returncode": completed.returncode, "tests": outcomes, "tail": completed.stdout[-2000:]}


def throughput_settings(device: str, quick: bool):
    from benchmarks import gpu_throughput

    if quick:
        return gpu_throughput.Settings(device=device, dtype="float32", prompts=2, samples=2, prompt_tokens=8,
                                       max_new_tokens=6, micro_batch_size=2, target_prompts=1, candidates=2,
                                       attn_implementation="sdpa", gradient_checkpointing=False,
                                       peak_tflops=gpu_throughput.H200_DENSE_BF16_TFLOPS, seed=0)
    return gpu_throughput.Settings(device=device, dtype="bfloat16", prompts=16, samples=8, prompt_tokens=256,
                                   max_new_tokens=256, micro_batch_size=16, target_prompts=4, candidates=8,
                                   attn_implementation="sdpa", gradient_checkpointing=False,
                                   peak_tflops=gpu_throughput.H200_DENSE_BF16_TFLOPS, seed=0)


def loop_settings(device: str, quick: bool):
    from benchmarks import loop_at_shape

    if quick:
        return loop_at_shape.Settings(device=device, iterations=2, documents=2, questions=2, answers=4,
                                      target_questions=2, generator_tokens=8, solver_tokens=6, micro_batch_size=4)
    return loop_at_shape.Settings(device=device, precision="bf16-true", dtype="bfloat16", iterations=2, documents=4,
                                  questions=4, answers=8, target_questions=8, generator_tokens=128,
                                  solver_tokens=128, micro_batch_size=16)


def goals(check: Check) -> list[dict]:
    """The issue's goals, met or missed, from what ran."""
    found = []
    for part in check.parts:
        if part.status != "ok":
            continue
        record = part.result
        if part.name.startswith("throughput"):
            shape = record.shape["name"]
            if shape == "qwen3-1.7b":
                found.append({"goal": f"update MFU >= {MFU_GOAL:.0%} at {shape}", "value": record.update.mfu,
                              "met": record.update.mfu >= MFU_GOAL})
            found.append({"goal": f"sampler >= model.generate at {shape}", "value": record.sampler_vs_generate,
                          "met": record.sampler_vs_generate >= 1.0})
        if part.name.startswith("loop"):
            shape = record.shape["name"]
            worst = max(abs(stage.ratio - 1) for stage in record.stages)
            found.append({"goal": f"memory estimate within {ESTIMATE_TOLERANCE:.0%} at every stage at {shape}",
                          "value": f"worst {worst:.1%}", "met": worst <= ESTIMATE_TOLERANCE})
            found.append({"goal": f"peak stage named right at {shape}",
                          "value": f"estimated {record.estimated_peak_stage}, measured {record.measured_peak_stage}",
                          "met": record.estimated_peak_stage == record.measured_peak_stage})
    return found


def markdown(check: Check) -> str:
    """The check as Markdown: environment, tests, throughput, loop memory, goals."""
    from benchmarks import gpu_throughput, loop_at_shape

    lines = [f"# GPU check, {check.date}", ""]
    for part in check.parts:
        if part.name == "environment" and part.result:
            env = part.result
            lines += [f"Device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}, "
                      f"CUDA {env['cuda']}. Missing: {', '.join(env['missing'] + env['optional_missing']) or 'none'}.",
                      ""]
    lines += ["| part | status | seconds | detail |", "|---|---|---|---|"]
    for part in check.parts:
        lines.append(f"| {part.name} | {part.status} | {part.seconds:.0f} | {part.detail[:160]} |")
    tests = next((p.result for p in check.parts if p.name == "cuda tests" and p.result), None)
    if tests:
        lines += ["", "| CUDA test | outcome | message |", "|---|---|---|"]
        lines += [f"| {name} | {o['outcome']} | {o['message'][:120]} |" for name, o in tests["tests"].items()]
    throughput = [p.result for p in check.parts if p.name.startswith("throughput") and p.status == "ok"]
    if throughput:
        lines += ["", gpu_throughput.table(throughput)]
    loops = [p.result for p in check.parts if p.name.startswith("loop") and p.status == "ok"]
    if loops:
        lines += ["", loop_at_shape.table(loops), "", "| tokens/s | " + " | ".join(loops[0].tokens_per_s) + " |",
                  "|---|" + "---|" * len(loops[0].tokens_per_s)]
        lines += [f"| {r.shape['name']} | " + " | ".join(f"{v:,.0f}" for v in r.tokens_per_s.values()) + " |"
                  for r in loops]
    if check.goals:
        lines += ["", "| goal | value | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['value']} | {'yes' if g['met'] else 'no'} |" for g in check.goals]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Check:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shapes", nargs="+", default=["qwen3-0.6b", "qwen3-1.7b"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--budget_s", type=float, default=420.0, help="start no part after this many seconds")
    args = parser.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"
    started = time.perf_counter()
    check = Check(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), settings=vars(args) | {
        "out": str(args.out)})

    def write() -> None:
        check.goals = goals(check)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(asdict(check), indent=2, default=str) + "\n")
        args.out.with_suffix(".md").write_text(markdown(check))

    def run(name: str, work) -> dict | None:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            check.parts.append(Part(name, "skipped", detail=f"budget: {elapsed:.0f} s spent of {args.budget_s:.0f}"))
            write()
            return None
        begun = time.perf_counter()
        try:
            result = work()
            part = Part(name, "ok", result=result)
        except Exception as error:  # noqa: BLE001 - a failed part is a result; the others still run
            part = Part(name, "failed", detail=f"{type(error).__name__}: {error}")
        part.seconds = round(time.perf_counter() - begun, 1)
        check.parts.append(part)
        write()
        print(f"[gpu_check] {name}: {part.status} in {part.seconds:.0f} s {part.detail[:200]}", flush=True)
        return part.result

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    env = run("environment", lambda: environment(args.device))
    if env and env["missing"]:
        check.parts[-1].detail = f"missing {', '.join(env['missing'])}: carry them as wheels (see --help)"
        write()
    run("cuda tests", lambda: cuda_tests(timeout=180))
    from benchmarks import gpu_throughput, loop_at_shape
    from benchmarks.model_shapes import SHAPES, build_checkpoint

    for name in args.shapes:
        with tempfile.TemporaryDirectory(prefix=f"infuser-gpu-check-{name}-") as directory:
            throughput = throughput_settings(args.device, args.quick)
            model_dir = Path(directory)

            def build() -> dict:
                build_checkpoint(SHAPES[name], model_dir, throughput.dtype, args.device)
                return {"parameters": SHAPES[name].parameters}

            if run(f"build {name}", build) is None:
                continue
            run(f"throughput {name}", lambda: gpu_throughput.measure(SHAPES[name], throughput, model_dir))
            if args.device == "cuda":
                torch.cuda.empty_cache()
            run(f"loop {name}", lambda: loop_at_shape.measure(name, loop_settings(args.device, args.quick), model_dir))
            if args.device == "cuda":
                torch.cuda.empty_cache()
    write()
    print(markdown(check))
    return check


if __name__ == "__main__":
    main()
