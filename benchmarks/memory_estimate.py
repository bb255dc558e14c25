"""Memory each process of an ``infuser fit`` run needs, per loop stage, from its settings (no model is loaded).

    python -m benchmarks.memory_estimate --json memory.json                  # the two Qwen3-8B recipes
    python -m benchmarks.memory_estimate configs/qwen3-8b-base.yaml --gpu_memory_gib 141
    python -m benchmarks.memory_estimate configs/toy.yaml --model path/to/model --solver_prompt_tokens 300 \
        --solver_completion_tokens 512 --documents 16 --questions 4 --answers 8 --micro_batch_size 8

A recipe YAML (the two 8B recipes by default, or none: ``--no_recipe``) gives the settings; keys it
leaves out take infuser's defaults; ``--set key=value`` (dotted recipe keys) and the flags below
override it. The models' shapes come from ``--model`` / ``--generator_model`` / ``--solver_model``
or the recipe's ``name_or_path``: a local model directory or ``config.json``, a Hub id whose
``config.json`` is in the local Hugging Face cache, or one of the shapes of
``benchmarks/model_shapes.py`` (nothing is downloaded). The run's own lengths replace the worst
cases: ``--generator_prompt_tokens`` / ``--solver_prompt_tokens`` (default: the document chunk plus
the template, and ``MAX_QUESTION_CHARS`` as 1024 tokens), ``--*_completion_tokens``
(``sampling.max_new_tokens``), ``--documents``, ``--questions``, ``--answers``,
``--target_questions`` (default: as many as a sampling batch holds) and ``--micro_batch_size``.

What is counted, per process (N = processes a role is sharded over: ``devices x num_nodes`` under
an FSDP strategy, else 1; P = a role's parameters, T = its trainable parameters):

* **Persistent**, for the whole run, both roles: the weights (full fine-tuning: P x dtype / N;
  QLoRA: the 4-bit base once per role, or once with ``share_base``, plus float32 adapters) and
  AdamW's two moments (torch's AdamW keeps them in the parameter's dtype: 2 x T x dtype / N).
  infuser's AdamW updates the stored weights directly: with ``dtype: float32`` the weights *are*
  the float32 master copy and no other copy exists; with a 16-bit dtype there is no master copy
  at all. A frozen reference copy (P x dtype, never sharded: it lives outside the strategy's
  module tree) exists only without LoRA and with a KL term (``beta != 0``).
* **Influence vectors** (``OptimizerAwareInfluence``, on the Solver; :func:`influence_buffers`):
  float32 vectors of T / N, made by ``prepare`` in the *target* stage and released by the loop
  after the last generator round, so they are held through *generate*, *solve*, *influence* and
  *generator_update*, and not through *solver_update*, *evaluate* and *checkpoint*.
* **Per stage** (``infuser.loop.STAGES``), on top of the above:

  - sampling (*target*, *generate*, *solve*, *evaluate*): the KV cache of the stage's rows (at most
    ``sampling.batch_size``) at the prompt plus ``max_new_tokens`` (after the shared prefill each
    row holds its own copy of its prompt's cache), and one decoding step's logits;
  - *target* also holds ``prepare``: the target gradient, the gradients accumulated over the
    target's micro-batches, and one micro-batch's forward+backward (:func:`pass_bytes`);
  - *influence*: one candidate's forward+backward (``answers_per_question`` rows, in micro-batches;
    a gradient is reduced during its backward and freed, :mod:`infuser.influence.gradients`, so
    none is held unless a candidate spans several micro-batches);
  - an update (*generator_update*, *solver_update*): the role's gradients (T x dtype / N), and the
    larger of one micro-batch's forward+backward and AdamW's step (torch's ``foreach`` AdamW makes
    one T-sized temporary: ``sqrt(v)``);
  - *checkpoint*: Lightning's ``fabric.save`` serialises both roles and their optimizers into an
    in-memory buffer before writing the file: the checkpoint's size once more, in host memory
    (counted only with ``trainer.accelerator: cpu``; on a GPU it is host RAM, not GPU memory).

* Under FSDP (``strategy: fsdp``: FSDP2 with one unit per decoder layer and the rest of the model
  as the root unit, see ``infuser.sharding``) a forward holds the root unit's parameters
  (embeddings, output projection, final norm) gathered in the compute dtype, and two decoder
  layers' (the one in use and the one prefetched); a backward also holds their unsharded
  gradients until they are reduce-scattered. Sampling gathers the whole model once per call (2P).
  Influence adds a flat buffer of the process's parameter shard, into which the strategy writes
  each candidate's reduced gradient.

The peak is the persistent part plus the largest stage.

One forward+backward of ``m`` rows (:func:`pass_bytes`): infuser runs each distinct prompt of a
micro-batch once and indexes its KV cache out to the rows (rows of one question or document are
adjacent), so a micro-batch holds the activations of its distinct prompts and of every row's
completion, every row's keys and values over prompt and completion (the attention of the
completion tokens keeps them), and the completion logits. Gradient checkpointing turns the
sharing off and keeps each layer's input only.

Approximations (stated; ``benchmarks/loop_at_shape.py`` measures them against a real run):

* Activations saved for the backward, per token and decoder layer, in bytes, with c the compute
  dtype's width and r the residual stream's (4 with float32 weights, as with float32 master
  weights or peft's 4-bit preparation, which keeps unquantised layers in float32):
  ``4c x I`` (the SwiGLU MLP: gate, up, activation, product), ``(3c + 4) x (H + K) d`` (queries
  and keys before and after their per-head RMSNorm, which works in float32, values and the
  attention output) and ``k(c, r) x hidden`` (the two RMSNorms' inputs and outputs and the
  residual stream; k = 26 in float32, 17.3 in bfloat16, 27.3 with bfloat16 autocast over float32
  weights). These coefficients were read off transformers' Qwen3 (``sdpa``) with
  ``torch.autograd.graph.saved_tensors_hooks`` at several widths (``tests/test_memory_estimate.py``
  re-measures the float32 ones). SDPA/flash attention keep no ``seq x seq`` matrix. LoRA adds
  ``r`` values per adapted module (and, with dropout, the dropped-out input).
* Logits: ``completion tokens x vocab x (compute + 8)`` bytes: the projection's output, its
  float32 copy kept for the log-softmax's backward, and one float32 temporary (the entropy
  metric's softmax, or the logits' gradient). infuser projects completion positions only.
* 4-bit weights (bitsandbytes NF4/FP4, blocks of 64): half a byte per weight plus the block
  scales, one byte per block with double quantisation (plus a float32 per 256 blocks), else four.
  The embeddings, the output projection and the norms are not quantised; peft's
  ``prepare_model_for_kbit_training`` (what infuser calls for a 4-bit base) keeps them in float32.
* Lengths are the given ones, else the configured maxima (every row at ``max_new_tokens``): worst
  cases, which is what an out-of-memory error is about.
* Not counted: the CUDA context and allocator fragmentation (budget a few GiB), communication
  buffers, the rollout tensors themselves (token ids and log-probs: megabytes), Python objects.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from benchmarks.model_shapes import ModelShape, shape_of

GIB = 2**30
MIB = 2**20
REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = [REPO / "configs" / "qwen3-8b-base.yaml", REPO / "configs" / "qwen3-8b-base-qlora-1gpu.yaml"]
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SOLVER_PROMPT_TOKENS = 1024  # MAX_QUESTION_CHARS = 4096 characters of question and options, ~4 per token
TEMPLATE_TOKENS = 128  # the Generator's instructions around the document chunk
# Bytes saved per token, decoder layer and unit of hidden width, by (compute, residual) width: see
# the module docstring (read off transformers' Qwen3 with saved-tensor hooks).
HIDDEN_BYTES = {(4, 4): 26.0, (2, 2): 17.3, (2, 4): 27.3}
LOGIT_BYTES = 20  # per completion logit in a forward+backward (measured: 18.6 in float32, 19.4 in bfloat16)
SAMPLING_LOGIT_BYTES = 44  # per logit of a decoding step beyond the logits themselves (measured: 43)
STAGES = ("target", "generate", "solve", "influence", "generator_update", "solver_update", "evaluate", "checkpoint")


def _get(tree: dict, dotted: str, default):
    """``tree["a"]["b"]...`` for ``a.b...``, or ``default`` where the recipe leaves it out."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return default
        node = node[key]
    return node


def _set(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value


@dataclass
class RunLengths:
    """The run's own lengths and schedule; ``None``: the recipe's (or infuser's default)."""

    generator_prompt_tokens: int | None = None
    solver_prompt_tokens: int | None = None
    generator_completion_tokens: int | None = None
    solver_completion_tokens: int | None = None
    documents: int | None = None
    questions: int | None = None
    answers: int | None = None
    target_questions: int | None = None
    eval_samples: int | None = None
    micro_batch_size: int | None = None

    def recipe_keys(self) -> dict[str, object]:
        """The recipe keys these lengths set."""
        keys = {"generator.sampling.max_new_tokens": self.generator_completion_tokens,
                "solver.sampling.max_new_tokens": self.solver_completion_tokens,
                "loop.eval_sampling.max_new_tokens": self.solver_completion_tokens,
                "loop.documents_per_iteration": self.documents, "loop.questions_per_document": self.questions,
                "loop.answers_per_question": self.answers, "loop.target_answers_per_question": self.answers,
                "loop.eval_samples": self.eval_samples,
                "generator.update.micro_batch_size": self.micro_batch_size,
                "solver.update.micro_batch_size": self.micro_batch_size}
        return {key: value for key, value in keys.items() if value is not None}


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
    sampling_batch: int  # sampling.batch_size: rows per sampling pass
    prompt_tokens: int
    completion_tokens: int
    group: int  # rows that share a prompt: drafts per document, answers per question
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
    documents: int
    target_questions: int | None  # None: as many as a sampling batch holds
    target_answers: int
    eval_batch: int
    eval_samples: int
    eval_tokens: int
    influence_mode: str
    fixed_v: bool
    accelerator: str  # trainer.accelerator: "cpu" puts the checkpoint's serialisation in this memory


def read_recipe(path: Path | None, models: dict[str, str] | None = None, lengths: RunLengths | None = None,
                settings: dict[str, object] | None = None) -> Recipe:
    """The numbers of ``path`` (``None``: infuser's defaults) that size memory, with ``models``
    (``{"generator": ..., "solver": ...}``), the run's ``lengths`` and dotted recipe keys
    (``settings``) replacing the file's."""
    tree = yaml.safe_load(path.read_text()) if path is not None else {}
    lengths = lengths or RunLengths()
    for key, value in {**lengths.recipe_keys(), **(settings or {})}.items():
        _set(tree, key, value)
    for role, name in (models or {}).items():
        _set(tree, f"{role}.model.name_or_path", name)
    trainer = tree.get("trainer") or {}
    precision = str(trainer.get("precision", "32-true"))
    chunk = _get(tree, "documents.init_args.chunk_tokens", 512)
    prompts = {"generator": lengths.generator_prompt_tokens or chunk + TEMPLATE_TOKENS,
               "solver": lengths.solver_prompt_tokens or SOLVER_PROMPT_TOKENS}
    groups = {"generator": _get(tree, "loop.questions_per_document", 4),
              "solver": _get(tree, "loop.answers_per_question", 8)}
    roles = []
    for name in ("generator", "solver"):
        role = tree.get(name) or {}
        model = role.get("model") or {}
        if "name_or_path" not in model:
            raise KeyError(f"{name}.model.name_or_path: not set; give a recipe that sets it or --model")
        roles.append(Role(
            name=name, shape=shape_of(str(model["name_or_path"])), dtype=model.get("dtype", "float32"),
            mixed_precision=precision.startswith(("bf16", "16")),
            gradient_checkpointing=bool(model.get("gradient_checkpointing", False)),
            lora_rank=_get(model, "lora.r", 16) if model.get("lora") is not None else None,
            lora_modules=_get(model, "lora.target_modules", "all-linear"),
            lora_dropout=_get(model, "lora.dropout", 0.0),
            quant_type=_get(model, "quantization.quant_type", None),
            double_quant=bool(_get(model, "quantization.double_quant", True)),
            micro_batch_size=_get(role, "update.micro_batch_size", 32),
            sampling_batch=_get(role, "sampling.batch_size", 256),
            prompt_tokens=prompts[name], completion_tokens=_get(role, "sampling.max_new_tokens", 64),
            group=groups[name], beta=_get(role, "update.loss.beta", 0.0),
        ))
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    devices = len(devices) if isinstance(devices, list) else int(devices) if str(devices).isdigit() else 1
    influence = tree.get("influence")
    init_args = (influence.get("init_args") or {}) if isinstance(influence, dict) else {}
    return Recipe(
        path=str(path.relative_to(REPO) if path.is_relative_to(REPO) else path) if path is not None else "defaults",
        gpus=devices * int(trainer.get("num_nodes", 1)) if "fsdp" in strategy else 1,
        processes=devices * int(trainer.get("num_nodes", 1)),
        strategy=strategy, precision=precision, share_base=bool(tree.get("share_base", False)), roles=roles,
        documents=_get(tree, "loop.documents_per_iteration", 16), target_questions=lengths.target_questions,
        target_answers=_get(tree, "loop.target_answers_per_question", 8),
        eval_batch=_get(tree, "loop.eval_sampling.batch_size", 256), eval_samples=_get(tree, "loop.eval_samples", 4),
        eval_tokens=prompts["solver"] + _get(tree, "loop.eval_sampling.max_new_tokens", 16),
        influence_mode=init_args.get("mode", "preconditioned_cosine"), fixed_v=bool(init_args.get("fixed_v", False)),
        accelerator=str(trainer.get("accelerator", "auto")),
    )


def influence_buffers(mode: str, fixed_v: bool) -> int:
    """Float32 vectors of the Solver's trainable size that ``OptimizerAwareInfluence`` keeps between
    ``prepare`` and ``release`` (see its docstring): the target gradient, and with preconditioning
    AdamW's second moment (with ``fixed_v``: ``g_T / d`` and ``1 / d**2`` instead)."""
    return 2 if mode.startswith("preconditioned") else 1


def base_weight_bytes(role: Role) -> int:
    """The base model's weights as stored: 4-bit decoder linear layers with ``quantization``."""
    shape = role.shape
    if role.quant_type is None:
        return shape.parameters * role.unquantised_bytes
    linear = shape.decoder_linear_parameters
    blocks = linear / 64
    scales = blocks * (1 + 4 / 256) if role.double_quant else blocks * 4
    return int(linear / 2 + scales + (shape.parameters - linear) * role.unquantised_bytes)


def _residual_bytes(role: Role) -> int:
    return 4 if role.unquantised_bytes == 4 else role.compute_bytes  # the embedding's dtype flows down


def activation_bytes_per_token(role: Role, checkpointing: bool) -> int:
    """Bytes saved for the backward per token of a row (see the module docstring)."""
    s, compute, residual = role.shape, role.compute_bytes, _residual_bytes(role)
    layer = (HIDDEN_BYTES[(compute, residual)] * s.hidden_size
             + (3 * compute + 4) * (s.num_attention_heads + s.num_key_value_heads) * s.head_dim
             + 4 * compute * s.intermediate_size)
    if role.lora_rank:
        adapted = [shape for name, shape in s.linear_shapes().items()
                   if role.lora_modules == "all-linear" or name in role.lora_modules]
        layer += compute * role.lora_rank * len(adapted)
        if role.lora_dropout > 0:
            layer += compute * sum(inputs for inputs, _ in adapted)
    if checkpointing:
        return int(s.num_hidden_layers * residual * s.hidden_size + layer)
    return int(s.num_hidden_layers * layer)


def kv_bytes_per_token(role: Role) -> int:
    """Keys and values of every layer for one token, in the compute dtype."""
    return role.shape.kv_bytes_per_token * role.compute_bytes // 2


def pass_bytes(role: Role, rows: int, checkpointing: bool | None = None) -> int:
    """One forward+backward over ``rows`` rows (``group`` consecutive rows share a prompt) at the
    prompt and completion lengths: activations, the rows' keys and values, completion logits.
    ``checkpointing``: the role's own setting unless given."""
    checkpointing = role.gradient_checkpointing if checkpointing is None else checkpointing
    prompt, completion = role.prompt_tokens, role.completion_tokens
    logits = rows * completion * role.shape.vocab_size * LOGIT_BYTES
    per_token = activation_bytes_per_token(role, checkpointing)
    if checkpointing or rows <= 1:  # every row in full
        return rows * (prompt + completion) * per_token + logits
    distinct = min(rows, math.ceil(rows / role.group) + 1)  # a micro-batch may straddle two groups
    return (distinct * prompt * per_token + rows * completion * per_token
            + rows * (prompt + completion) * kv_bytes_per_token(role) + logits)


def sampling_bytes(role: Role, rows: int, tokens: int, batch: int) -> dict[str, int]:
    """One sampling pass (at most ``batch`` rows): its KV cache, and one decoding step's logits with
    the sampler's temporaries."""
    rows = min(rows, batch)
    return {"KV cache": rows * tokens * kv_bytes_per_token(role),
            "one decoding step": rows * role.shape.vocab_size * (role.compute_bytes + SAMPLING_LOGIT_BYTES)}


@dataclass
class Estimate:
    """Bytes per process of one run, by component, per loop stage, and the peak."""

    recipe: str
    gpus_per_role: int
    strategy: str
    precision: str
    share_base: bool
    trainable_parameters: dict[str, int]
    persistent: dict[str, int]
    influence_vectors: int  # held from the target stage through the last generator update
    stages: dict[str, int]  # each stage's part on top of the persistent one
    components: dict[str, dict[str, int]]  # what each stage's part is made of
    activations_without_checkpointing: int  # the update's micro-batch, for comparison
    activations_with_checkpointing: int
    peak: int
    peak_stage: str
    notes: list[str] = field(default_factory=list)


def _fsdp_gathered(recipe: Recipe) -> tuple[int, int]:
    """What FSDP gathers in the compute dtype (2 bytes): the root unit and two decoder layers for a
    pass, the whole model for sampling."""
    if "fsdp" not in recipe.strategy:
        return 0, 0
    layers = max(2 * (role.shape.embedding_parameters + role.shape.lm_head_parameters
                      + 2 * (role.shape.linear_parameters_per_layer + role.shape.norm_parameters_per_layer))
                 for role in recipe.roles)
    return layers, max(2 * role.shape.parameters for role in recipe.roles)


def _stages(recipe: Recipe) -> dict[str, dict[str, int]]:
    """Each stage's components per process, on top of the persistent part."""
    n, processes = recipe.gpus, recipe.processes
    generator, solver = recipe.roles
    gathered, whole = _fsdp_gathered(recipe)

    def share(rows: int) -> int:  # a process samples and trains on its shard of every batch
        return math.ceil(rows / processes)

    def update(role: Role) -> dict[str, int]:
        gradients = role.trainable * role.trainable_bytes // n
        return {"gradients": gradients,
                "one micro-batch, or AdamW's step": max(pass_bytes(role, role.micro_batch_size), gradients),
                "gathered parameters + unsharded gradient (FSDP)": 2 * gathered}

    vectors = {"influence vectors": (influence_buffers(recipe.influence_mode, recipe.fixed_v)
                                     + ("fsdp" in recipe.strategy)) * solver.trainable * 4 // n}
    drafts = share(recipe.documents * generator.group)
    answers = drafts * solver.group
    target_rows = (share(recipe.target_questions * recipe.target_answers) if recipe.target_questions
                   else solver.sampling_batch)
    eval_rows = share(recipe.target_questions * recipe.eval_samples) if recipe.target_questions else recipe.eval_batch
    solver_tokens = solver.prompt_tokens + solver.completion_tokens
    target_micro = min(target_rows, solver.micro_batch_size)
    candidate_micro = min(solver.group, solver.micro_batch_size)
    accumulated = solver.trainable * solver.trainable_bytes // n
    prepare = {"target gradient": solver.trainable * 4 // n,
               "accumulated gradients": accumulated if target_rows > solver.micro_batch_size else 0,
               "one micro-batch": pass_bytes(solver, target_micro)}
    target_sampling = sampling_bytes(solver, target_rows, solver_tokens, solver.sampling_batch)
    generate = sampling_bytes(generator, drafts, generator.prompt_tokens + generator.completion_tokens,
                              generator.sampling_batch)
    checkpoint = sum(role.trainable * role.trainable_bytes * 3 if role.lora_rank else  # weights and AdamW moments
                     base_weight_bytes(role) + 2 * role.trainable * role.trainable_bytes for role in recipe.roles) // n
    stages = {
        "target": ({**target_sampling, "gathered parameters (FSDP)": whole}
                   if sum(target_sampling.values()) + whole > sum(prepare.values()) + 2 * gathered
                   else {**prepare, "gathered parameters + unsharded gradient (FSDP)": 2 * gathered}),
        "generate": {**vectors, **generate, "gathered parameters (FSDP)": whole},
        "solve": {**vectors, **sampling_bytes(solver, answers, solver_tokens, solver.sampling_batch),
                  "gathered parameters (FSDP)": whole},
        "influence": {**vectors, "one candidate's micro-batch": pass_bytes(solver, candidate_micro),
                      "accumulated gradients": accumulated if solver.group > solver.micro_batch_size else 0,
                      "gathered parameters + unsharded gradient (FSDP)": 2 * gathered},
        "generator_update": {**vectors, **update(generator)},
        "solver_update": update(solver),
        "evaluate": {**sampling_bytes(solver, eval_rows, recipe.eval_tokens, recipe.eval_batch),
                     "gathered parameters (FSDP)": whole},
        # Lightning serialises a checkpoint into memory before writing it: host memory, which is
        # this process's memory only when it computes on the CPU
        "checkpoint": {"serialised checkpoint": checkpoint if recipe.accelerator == "cpu" else 0},
    }
    return stages


def estimate(recipe: Recipe) -> Estimate:
    """Per-process memory of ``recipe``."""
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
    components = _stages(recipe)
    stages = {name: sum(parts.values()) for name, parts in components.items()}
    peak_stage = max(stages, key=stages.get)
    updater = max(recipe.roles, key=lambda role: pass_bytes(role, role.micro_batch_size))
    return Estimate(
        recipe=recipe.path, gpus_per_role=n, strategy=recipe.strategy, precision=recipe.precision,
        share_base=recipe.share_base, trainable_parameters={role.name: role.trainable for role in recipe.roles},
        persistent=persistent, influence_vectors=components["generate"]["influence vectors"], stages=stages,
        components=components,
        activations_without_checkpointing=pass_bytes(updater, updater.micro_batch_size, False),
        activations_with_checkpointing=pass_bytes(updater, updater.micro_batch_size, True),
        peak=sum(persistent.values()) + stages[peak_stage], peak_stage=peak_stage, notes=notes,
    )


def _gib(value: int) -> str:
    return f"{value / GIB:,.1f}" if value >= GIB / 10 or value == 0 else f"{value / GIB:,.3f}"


def table(estimates: list[Estimate], gpu_memory_gib: float) -> str:
    """One column per recipe, GiB per process, as Markdown."""
    lines = ["| GiB per process | " + " | ".join(Path(e.recipe).stem for e in estimates) + " |",
             "|---|" + "---|" * len(estimates)]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("processes a role is sharded over", [str(e.gpus_per_role) for e in estimates])
    row("trainable parameters per role (M)", [f"{e.trainable_parameters['solver'] / 1e6:,.1f}" for e in estimates])
    for label in dict.fromkeys(label for e in estimates for label in e.persistent):
        row(f"persistent: {label}", [_gib(e.persistent[label]) if label in e.persistent else "-" for e in estimates])
    row("influence vectors (target to generator_update)", [_gib(e.influence_vectors) for e in estimates])
    for stage in STAGES:
        row(f"stage: {stage}", [_gib(e.stages[stage]) for e in estimates])
    row("(update micro-batch without checkpointing)", [_gib(e.activations_without_checkpointing) for e in estimates])
    row("(update micro-batch with checkpointing)", [_gib(e.activations_with_checkpointing) for e in estimates])
    row("**peak** (persistent + largest stage)", [f"**{_gib(e.peak)}** ({e.peak_stage})" for e in estimates])
    row(f"fits in {gpu_memory_gib:g} GiB", ["yes" if e.peak / GIB <= gpu_memory_gib else "no" for e in estimates])
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> tuple[list[Recipe], argparse.Namespace]:
    """The recipes described by the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", type=Path, help="recipe YAML files (default: the two 8B recipes)")
    parser.add_argument("--no_recipe", action="store_true", help="no recipe: infuser's defaults and the flags")
    parser.add_argument("--model", help="both roles' model: a local directory, config.json, Hub id or shape name")
    parser.add_argument("--generator_model")
    parser.add_argument("--solver_model")
    for name in ("generator_prompt_tokens", "solver_prompt_tokens", "generator_completion_tokens",
                 "solver_completion_tokens", "documents", "questions", "answers", "target_questions", "eval_samples",
                 "micro_batch_size"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted recipe key, e.g. trainer.precision=bf16-true (YAML value); repeatable")
    parser.add_argument("--gpu_memory_gib", type=float, default=80.0,
                        help="one GPU's memory, for the 'fits' row (80: the reference's H100; an H200 has ~141)")
    parser.add_argument("--json", type=Path, help="also write the estimates as JSON to this path")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--set {item}: expected KEY=VALUE")
        settings[key] = yaml.safe_load(value)
    models = {role: name for role, name in (("generator", args.generator_model or args.model),
                                            ("solver", args.solver_model or args.model)) if name}
    lengths = RunLengths(**{name: getattr(args, name) for name in RunLengths.__dataclass_fields__})
    paths: list[Path | None] = [None] if args.no_recipe else [p.resolve() for p in args.recipes] or DEFAULT_RECIPES
    try:
        recipes = [read_recipe(path, models, lengths, settings) for path in paths]
    except KeyError as error:
        parser.error(str(error.args[0]))
    return recipes, args


def main(argv: list[str] | None = None) -> list[Estimate]:
    recipes, args = parse(argv)
    estimates = [estimate(recipe) for recipe in recipes]
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
