"""GPU memory each recipe needs, per GPU, computed from its YAML file (no model is loaded).

    python benchmarks/memory_estimate.py --json memory.json
    python benchmarks/memory_estimate.py configs/qwen3-8b-base.yaml --gpu_memory_gib 141

Reading the numbers from the recipes (``configs/qwen3-8b-base.yaml`` and
``configs/qwen3-8b-base-qlora-1gpu.yaml`` by default) keeps the estimate in step with them; keys a
recipe leaves out take infuser's defaults. The model's shape comes from
``benchmarks/model_shapes.py`` by its Hub id.

What is counted, per GPU (N = GPUs a role is sharded over: ``devices x num_nodes`` under an FSDP
strategy, else 1; P = a role's parameters, T = its trainable parameters):

* **Persistent**, for the whole run, both roles: the weights (full fine-tuning: P x dtype / N;
  QLoRA: the 4-bit base once per role, or once with ``share_base``, plus float32 adapters) and
  AdamW's two moments (torch's AdamW keeps them in the parameter's dtype: 2 x T x dtype / N).
  infuser's AdamW updates the stored weights directly: with ``dtype: float32`` the weights *are*
  the float32 master copy and no other copy exists; with a 16-bit dtype there is no master copy
  at all. A frozen reference copy (P x dtype, never sharded: it lives outside the strategy's
  module tree) exists only without LoRA and with a KL term (``beta != 0``).
* **Rollout**, the largest of both roles' sampling and the evaluation's: the KV cache of
  ``sampling.batch_size`` rows at the longest prompt plus ``max_new_tokens`` (after the shared
  prefill each row holds its own copy of its prompt's cache).
* **Update**, the larger role: its gradients (T x dtype / N, freed after each optimizer step) and
  the activations and logits of one micro-batch of ``micro_batch_size`` rows.
* **Influence** (``OptimizerAwareInfluence``, on the Solver): its flat T-sized buffers (see
  :func:`influence_buffers`) and one forward+backward of ``micro_batch_size`` rows: ``prepare``
  (the target set) and ``score`` (each candidate's answers) accumulate their gradients over the
  Solver's micro-batches, like the update.
* Under FSDP (``strategy: fsdp``: FSDP2 with one unit per decoder layer and the rest of the model
  as the root unit, see ``infuser.sharding``) a forward holds the root unit's parameters
  (embeddings, output projection, final norm) gathered in the compute dtype, and two decoder
  layers' (the one in use and the one prefetched); a backward also holds their unsharded
  gradients until they are reduce-scattered. Sampling gathers the whole model once per call (2P).
  The influence buffers hold the process's parameter shard (T / N each).

The peak is the persistent part plus the largest stage.

Approximations (stated, not measured):

* Activations saved for the backward by one Qwen3 decoder layer, per token: each of the two
  RMSNorms keeps its float32 input (4h bytes) and its output in the residual stream's dtype
  (float32 when the embedding is, as with float32 master weights or peft's 4-bit preparation,
  which keeps unquantised layers in float32; the next linear layer then also keeps a bfloat16
  copy of it under autocast); attention keeps q and k before and after their per-head norms, v
  and its output, ``4(H + K)d`` values; the SwiGLU MLP keeps gate, up, activation and product,
  4I values; both in the compute dtype. SDPA/flash attention keep no ``seq x seq`` matrix. With
  gradient checkpointing each layer keeps only its input, and one layer's activations exist again
  while it is recomputed. LoRA adds ``r`` values per adapted module (and, with dropout, the
  dropped-out input).
* Logits: ``completion tokens x vocab x (compute + 8)`` bytes: the projection's output, its
  float32 copy kept for the log-softmax's backward, and one float32 temporary (the entropy
  metric's softmax, or the logits' gradient). infuser projects completion positions only.
* 4-bit weights (bitsandbytes NF4/FP4, blocks of 64): half a byte per weight plus the block
  scales, one byte per block with double quantisation (plus a float32 per 256 blocks), else four.
  The embeddings, the output projection and the norms are not quantised; peft's
  ``prepare_model_for_kbit_training`` (what infuser calls for a 4-bit base) keeps them in float32.
* Lengths are the configured maxima: the Generator's prompt is ``documents.chunk_tokens`` plus the
  template, the Solver's at most ``MAX_QUESTION_CHARS`` (4096) characters, taken as 1024 tokens.
  Real rows are often shorter, and finished rows leave the sampling batch early; these are the
  worst cases an out-of-memory error is about.
* Not counted: the CUDA context and allocator fragmentation (budget a few GiB), communication
  buffers, the rollout tensors themselves (token ids and log-probs: megabytes).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from model_shapes import ModelShape, shape_of

GIB = 2**30
REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = [REPO / "configs" / "qwen3-8b-base.yaml", REPO / "configs" / "qwen3-8b-base-qlora-1gpu.yaml"]
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SOLVER_PROMPT_TOKENS = 1024  # MAX_QUESTION_CHARS = 4096 characters of question and options, ~4 per token
TEMPLATE_TOKENS = 128  # the Generator's instructions around the document chunk


def _get(tree: dict, dotted: str, default):
    """``tree["a"]["b"]...`` for ``a.b...``, or ``default`` where the recipe leaves it out."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return default
        node = node[key]
    return node


@dataclass
class Role:
    """What a role's memory depends on, as read from a recipe."""

    name: str
    shape: ModelShape
    dtype: str
    mixed_precision: bool  # a 16-bit trainer.precision: matmuls (and the KV cache) in 16 bits
    gradient_checkpointing: bool
    lora_rank: int | None
    lora_modules: list[str] | str
    lora_dropout: float
    quant_type: str | None
    double_quant: bool
    micro_batch_size: int
    sampling_rows: int
    prompt_tokens: int
    completion_tokens: int
    beta: float

    @property
    def trainable(self) -> int:
        if self.lora_rank:
            return self.shape.lora_parameters(self.lora_rank, self.lora_modules)
        return self.shape.parameters

    @property
    def trainable_bytes(self) -> int:
        """Bytes per trainable parameter: adapters are float32 (peft keeps them so over a 16-bit base)."""
        return 4 if self.lora_rank else DTYPE_BYTES[self.dtype]

    @property
    def unquantised_bytes(self) -> int:
        """Bytes per weight of the layers stored unquantised (all of them without quantisation)."""
        return 4 if self.quant_type else DTYPE_BYTES[self.dtype]

    @property
    def compute_bytes(self) -> int:
        return 2 if self.mixed_precision else DTYPE_BYTES[self.dtype]


@dataclass
class Recipe:
    path: str
    gpus: int  # devices a role is sharded over
    processes: int  # devices x nodes: each process samples and trains on its shard of every batch
    strategy: str
    precision: str
    share_base: bool
    roles: list[Role]
    eval_rows: int
    eval_tokens: int
    influence_mode: str
    fixed_v: bool


def read_recipe(path: Path) -> Recipe:
    """The numbers of ``path`` that size memory; infuser's defaults where the file is silent."""
    tree = yaml.safe_load(path.read_text())
    trainer = tree.get("trainer") or {}
    precision = str(trainer.get("precision", "32-true"))
    roles = []
    chunk = _get(tree, "documents.init_args.chunk_tokens", 512)
    for name, prompt in (("generator", chunk + TEMPLATE_TOKENS), ("solver", SOLVER_PROMPT_TOKENS)):
        role = tree.get(name) or {}
        model = role.get("model") or {}
        roles.append(Role(
            name=name, shape=shape_of(model["name_or_path"]), dtype=model.get("dtype", "float32"),
            mixed_precision=precision.startswith(("bf16", "16")),
            gradient_checkpointing=bool(model.get("gradient_checkpointing", False)),
            lora_rank=_get(model, "lora.r", 16) if model.get("lora") is not None else None,
            lora_modules=_get(model, "lora.target_modules", "all-linear"),
            lora_dropout=_get(model, "lora.dropout", 0.0),
            quant_type=_get(model, "quantization.quant_type", None),
            double_quant=bool(_get(model, "quantization.double_quant", True)),
            micro_batch_size=_get(role, "update.micro_batch_size", 32),
            sampling_rows=_get(role, "sampling.batch_size", 256),
            prompt_tokens=prompt, completion_tokens=_get(role, "sampling.max_new_tokens", 64),
            beta=_get(role, "update.loss.beta", 0.0),
        ))
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    devices = len(devices) if isinstance(devices, list) else int(devices) if str(devices).isdigit() else 1
    influence = tree.get("influence")
    init_args = (influence.get("init_args") or {}) if isinstance(influence, dict) else {}
    return Recipe(
        path=str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
        gpus=devices * int(trainer.get("num_nodes", 1)) if "fsdp" in strategy else 1,
        processes=devices * int(trainer.get("num_nodes", 1)),
        strategy=strategy, precision=precision, share_base=bool(tree.get("share_base", False)), roles=roles,
        eval_rows=_get(tree, "loop.eval_sampling.batch_size", 256),
        eval_tokens=SOLVER_PROMPT_TOKENS + _get(tree, "loop.eval_sampling.max_new_tokens", 16),
        influence_mode=init_args.get("mode", "preconditioned_cosine"), fixed_v=bool(init_args.get("fixed_v", False)),
    )


def influence_buffers(mode: str, fixed_v: bool) -> int:
    """T-sized float32 buffers ``OptimizerAwareInfluence`` keeps between ``prepare`` and ``score``.

    From ``infuser.influence.gradients`` and ``optimizer_aware``: the flat gradient buffer and the
    target gradient ``g_T``; with preconditioning also ``AdamStep``'s ``v`` term, output and
    denominator buffers; with ``fixed_v`` additionally ``1 / d**2``.
    """
    if not mode.startswith("preconditioned"):
        return 2
    return 6 if fixed_v else 5


def base_weight_bytes(role: Role) -> int:
    """The base model's weights as stored: 4-bit decoder linear layers with ``quantization``."""
    shape = role.shape
    if role.quant_type is None:
        return shape.parameters * role.unquantised_bytes
    linear = shape.decoder_linear_parameters
    blocks = linear / 64
    scales = blocks * (1 + 4 / 256) if role.double_quant else blocks * 4
    return int(linear / 2 + scales + (shape.parameters - linear) * role.unquantised_bytes)


def activation_bytes_per_token(role: Role, checkpointing: bool) -> int:
    """Bytes saved for the backward per token of a row (see the module docstring)."""
    s, compute = role.shape, role.compute_bytes
    residual = 4 if role.unquantised_bytes == 4 else compute  # the embedding's dtype flows down the residual
    norm = 4 * s.hidden_size + residual * s.hidden_size + (compute * s.hidden_size if residual != compute else 0)
    layer = 2 * norm + compute * (4 * (s.num_attention_heads + s.num_key_value_heads) * s.head_dim
                                  + 4 * s.intermediate_size)
    if role.lora_rank:
        adapted = [shape for name, shape in s.linear_shapes().items()
                   if role.lora_modules == "all-linear" or name in role.lora_modules]
        layer += compute * role.lora_rank * len(adapted)
        if role.lora_dropout > 0:
            layer += compute * sum(inputs for inputs, _ in adapted)
    if checkpointing:
        return s.num_hidden_layers * residual * s.hidden_size + layer
    return s.num_hidden_layers * layer


def pass_bytes(role: Role, rows: int, checkpointing: bool) -> int:
    """One forward+backward over ``rows`` rows at the longest prompt and completion: activations and logits."""
    tokens = role.prompt_tokens + role.completion_tokens
    logits = role.completion_tokens * role.shape.vocab_size * (role.compute_bytes + 8)
    return rows * (tokens * activation_bytes_per_token(role, checkpointing) + logits)


def configured_pass_bytes(role: Role, rows: int) -> int:
    """:func:`pass_bytes` with the role's own gradient-checkpointing setting."""
    return pass_bytes(role, rows, role.gradient_checkpointing)


@dataclass
class Estimate:
    """Per-GPU bytes of one recipe, by component, and the peak."""

    recipe: str
    gpus_per_role: int
    strategy: str
    precision: str
    share_base: bool
    trainable_parameters: dict[str, int]
    persistent: dict[str, int]
    rollout: dict[str, int]
    update: dict[str, int]
    influence: dict[str, int]
    largest_sampling: str  # whose sampling needs the largest KV cache
    activations_without_checkpointing: int  # the update's micro-batch, for comparison
    activations_with_checkpointing: int
    peak: int
    peak_stage: str
    notes: list[str] = field(default_factory=list)


def _stages(recipe: Recipe) -> tuple[dict[str, int], dict[str, int], dict[str, int], str]:
    """Rollout, update and influence transients per GPU."""
    n = recipe.gpus
    solver = recipe.roles[1]
    gathered = whole = 0
    if "fsdp" in recipe.strategy:  # in the compute dtype (2 bytes): the root unit and two decoder layers
        gathered = max(2 * (role.shape.embedding_parameters + role.shape.lm_head_parameters
                            + 2 * (role.shape.linear_parameters_per_layer + role.shape.norm_parameters_per_layer))
                       for role in recipe.roles)
        whole = max(2 * role.shape.parameters for role in recipe.roles)  # sampling gathers the model once

    def kv(role: Role, rows: int, tokens: int) -> int:
        return rows * tokens * role.shape.kv_bytes_per_token * role.compute_bytes // 2

    caches = {f"{role.name} sampling": kv(role, role.sampling_rows, role.prompt_tokens + role.completion_tokens)
              for role in recipe.roles}
    caches["evaluation sampling"] = kv(solver, recipe.eval_rows, recipe.eval_tokens)
    largest = max(caches, key=caches.get)
    rollout = {"KV cache": caches[largest], "gathered parameters (FSDP)": whole}
    update = {"gradients": max(role.trainable * role.trainable_bytes for role in recipe.roles) // n,
              "activations + logits (one micro-batch)": max(configured_pass_bytes(role, role.micro_batch_size)
                                                            for role in recipe.roles),
              "gathered parameters + unsharded gradient (FSDP)": 2 * gathered}
    buffers = influence_buffers(recipe.influence_mode, recipe.fixed_v) * solver.trainable * 4
    influence = {"flat buffers": buffers // n,
                 "activations + logits (one micro-batch)": configured_pass_bytes(solver, solver.micro_batch_size),
                 "gathered parameters + unsharded gradient (FSDP)": 2 * gathered}
    return rollout, update, influence, largest


def estimate(recipe: Recipe) -> Estimate:
    """Per-GPU memory of ``recipe``."""
    n = recipe.gpus
    generator, solver = recipe.roles
    notes = []
    persistent: dict[str, int] = {}
    if generator.quant_type is None:
        persistent["weights"] = sum(base_weight_bytes(role) for role in recipe.roles) // n
    else:
        copies = 1 if recipe.share_base else 2
        persistent["weights (4-bit base)"] = copies * base_weight_bytes(generator) // n
        persistent["weights (adapters)"] = sum(role.trainable * role.trainable_bytes for role in recipe.roles) // n
    persistent["AdamW moments"] = sum(2 * role.trainable * role.trainable_bytes for role in recipe.roles) // n
    persistent["reference copy (KL)"] = sum(base_weight_bytes(role) for role in recipe.roles
                                            if role.beta != 0 and role.lora_rank is None)
    if any(role.trainable_bytes == 2 for role in recipe.roles):
        notes.append("16-bit trainable weights: there is no float32 master copy, and AdamW steps smaller than the "
                     "weights' bfloat16 spacing are lost")
    rollout, update, influence, largest = _stages(recipe)
    stages = {"rollout": sum(rollout.values()), "update": sum(update.values()), "influence": sum(influence.values())}
    peak_stage = max(stages, key=stages.get)
    updater = max(recipe.roles, key=lambda role: configured_pass_bytes(role, role.micro_batch_size))
    return Estimate(
        recipe=recipe.path, gpus_per_role=n, strategy=recipe.strategy, precision=recipe.precision,
        share_base=recipe.share_base, trainable_parameters={role.name: role.trainable for role in recipe.roles},
        persistent=persistent, rollout=rollout, update=update, influence=influence, largest_sampling=largest,
        activations_without_checkpointing=pass_bytes(updater, updater.micro_batch_size, False),
        activations_with_checkpointing=pass_bytes(updater, updater.micro_batch_size, True),
        peak=sum(persistent.values()) + stages[peak_stage],
        peak_stage=peak_stage, notes=notes,
    )


def _gib(value: int) -> str:
    return f"{value / GIB:,.1f}"


def table(estimates: list[Estimate], gpu_memory_gib: float) -> str:
    """One column per recipe, GiB per GPU, as Markdown."""
    lines = ["| GiB per GPU | " + " | ".join(Path(e.recipe).stem for e in estimates) + " |",
             "|---|" + "---|" * len(estimates)]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    def fits(value: int) -> str:
        return "yes" if value / GIB <= gpu_memory_gib else "no"

    row("GPUs a role is sharded over", [str(e.gpus_per_role) for e in estimates])
    row("trainable parameters per role (M)", [f"{e.trainable_parameters['solver'] / 1e6:,.0f}" for e in estimates])
    for section in ("persistent", "rollout", "update", "influence"):
        labels = list(dict.fromkeys(label for e in estimates for label in getattr(e, section)))
        for label in labels:
            row(f"{section}: {label}", [_gib(getattr(e, section)[label]) if label in getattr(e, section) else "-"
                                        for e in estimates])
    row("(largest KV cache)", [e.largest_sampling for e in estimates])
    row("(update micro-batch without checkpointing)", [_gib(e.activations_without_checkpointing) for e in estimates])
    row("(update micro-batch with checkpointing)", [_gib(e.activations_with_checkpointing) for e in estimates])
    row("**peak** (persistent + largest stage)", [f"**{_gib(e.peak)}** ({e.peak_stage})" for e in estimates])
    row(f"fits in {gpu_memory_gib:g} GiB", [fits(e.peak) for e in estimates])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Estimate]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", type=Path, default=DEFAULT_RECIPES, help="recipe YAML files")
    parser.add_argument("--gpu_memory_gib", type=float, default=80.0,
                        help="one GPU's memory, for the 'fits' rows (80: the reference's H100; an H200 has ~141)")
    parser.add_argument("--json", type=Path, help="also write the estimates as JSON to this path")
    args = parser.parse_args(argv)
    estimates = [estimate(read_recipe(path.resolve())) for path in args.recipes]
    print(table(estimates, args.gpu_memory_gib))
    for e in estimates:
        for note in e.notes:
            print(f"- {Path(e.recipe).stem}: {note}")
    if args.json is not None:
        args.json.write_text(json.dumps({"gpu_memory_gib": args.gpu_memory_gib,
                                         "estimates": [asdict(e) for e in estimates]}, indent=2) + "\n")
        print(f"written to {args.json}")
    return estimates


if __name__ == "__main__":
    main()
