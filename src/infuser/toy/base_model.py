"""Build, pretrain and cache a toy base model (a few hundred thousand parameters, CPU minutes).

The base must be a plausible starting point for both roles: as a Generator it should usually
draft well-formed questions with correct golden answers copied from the document; as a Solver it
should have the world's designed prior competence per kind (pass rates well between 0 and 1 where
RL should have signal). One recipe mechanism serves every toy world (:class:`ToyRecipe`): a
synthetic corpus of Generator drafting examples and Solver answers that are right with a per-kind
probability (``solver_skill``; a wrong one is the world's typical mistake, see
:meth:`ArithmeticWorld.mistaken_answer`), a word-level tokenizer, and next-token training on
completions. A world's recipe is a subclass that names its world and its bundle.

Everything is derived from a seed, and the result is cached under a key that hashes every
setting, so a second run loads it in a second through the ordinary ``from_pretrained`` path. The
default recipe of each world ships inside the package (``toy/pretrained*/``), named
``builtin:toy`` and ``builtin:toy-rules`` (see :mod:`infuser.toy.builtin`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from infuser.data.prompts import PromptTemplates
from infuser.data.questions import write_question
from infuser.toy.rules import RuleWorld, RuleWorldConfig
from infuser.toy.world import ArithmeticWorld, ToyWorld, ToyWorldConfig

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
UNK = "<|unk|>"

# Words (with their leading space), numbers, single symbols, single whitespace characters; decoding
# is exact concatenation. Whole numbers: every number 0-99 is one token. Digits: every digit is one.
WHOLE_NUMBERS = r" ?[A-Za-z]+| ?\d+| ?[^A-Za-z\d\s]|\s"
DIGITS = r" ?[A-Za-z]+| ?\d| ?[^A-Za-z\d\s]|\s"


@dataclass
class ToyRecipe(ABC):
    """What every toy base's recipe holds; every field enters the cache key.

    Attributes:
        seed: seeds the corpus, the initialisation and the batch order.
        solver_skill: per kind, how often the corpus's worked answers are right (a wrong one is
            the world's typical mistake): the base Solver's prior competence.
        required_kinds: kinds every pretraining document states, so the base learns to copy them
            even when it rarely asks about them.
        generator_preference: how the pretraining Generator picks which kind of fact to ask
            about: the base Generator's default curriculum, deliberately far from the target mix.
        examples: corpus size (half drafting examples, half Solver answers).
        hidden_size, num_layers, num_heads, intermediate_size: the Qwen3-shaped model.
        epochs, batch_size, learning_rate: the training schedule (AdamW, one-cycle).
    """

    format_version: ClassVar[int]  # bump when the corpus or training recipe changes meaning
    bundle: ClassVar[str]  # the folder under toy/ holding the default recipe's build

    seed: int = 0
    solver_skill: dict[str, float] = field(default_factory=dict)
    required_kinds: list[str] = field(default_factory=list)
    generator_preference: dict[str, float] = field(default_factory=dict)
    examples: int = 32000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 3e-3

    @abstractmethod
    def make_world(self) -> ArithmeticWorld:
        """The world whose documents and questions the corpus is made of."""

    def pretokenize_pattern(self) -> str:
        """How the tokenizer splits text (:data:`WHOLE_NUMBERS` or :data:`DIGITS`)."""
        return WHOLE_NUMBERS

    def cache_key(self) -> str:
        payload = json.dumps({"v": self.format_version, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class ToyBaseConfig(ToyRecipe):
    """Recipe of the aligned toy world's base (``builtin:toy``): strong at sums and differences,
    weak at products (a lookup table it has seen mostly wrong)."""

    format_version: ClassVar[int] = 3
    bundle: ClassVar[str] = "pretrained"

    world: ToyWorldConfig = field(default_factory=ToyWorldConfig)
    solver_skill: dict[str, float] = field(default_factory=lambda: {"sum": 0.9, "difference": 0.9, "product": 0.3})
    required_kinds: list[str] = field(default_factory=lambda: ["product"])
    generator_preference: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.35, "difference": 0.35, "product": 0.30})

    def make_world(self) -> ToyWorld:
        return ToyWorld(self.world)


@dataclass
class RuleBaseConfig(ToyRecipe):
    """Recipe of the rule world's base (``builtin:toy-rules``).

    Attributes:
        world: the world the corpus is drawn from.
        number_tokens: ``digits`` (every digit a token, the default: the column method is then
            copies and one-digit facts) or ``whole`` (every number 0-99 one token, as in the
            aligned world; a control that must look up each number's digits).
    """

    format_version: ClassVar[int] = 1
    bundle: ClassVar[str] = "pretrained_rules"

    world: RuleWorldConfig = field(default_factory=RuleWorldConfig)
    solver_skill: dict[str, float] = field(default_factory=lambda: {
        "sum": 0.97, "difference": 0.97, "product": 0.6, "carry": 0.18, "no_carry": 1.0})
    required_kinds: list[str] = field(default_factory=lambda: ["carry"])
    generator_preference: dict[str, float] = field(default_factory=lambda: {
        "sum": 0.3, "difference": 0.3, "product": 0.3, "carry": 0.1})
    examples: int = 48000  # the aligned base's 32000 left its Generator miscopying two-digit operands
    number_tokens: Literal["digits", "whole"] = "digits"

    def make_world(self) -> RuleWorld:
        return RuleWorld(self.world)

    def pretokenize_pattern(self) -> str:
        return DIGITS if self.number_tokens == "digits" else WHOLE_NUMBERS


def _corpus(config: ToyRecipe, templates: PromptTemplates) -> list[tuple[str, str]]:
    """(prompt, completion) pairs: Generator drafting examples and noisy Solver answers, 1:1.

    The Solver's questions draw their kind uniformly over the world's kinds and their operands
    from the world's whole range.
    """
    rng = random.Random(config.seed)
    world = config.make_world()
    pairs = []
    for _ in range(config.examples // 2):
        document, facts = world.document(rng, tuple(config.required_kinds))
        present = sorted({world.kind(f) for f in facts})
        kind = rng.choices(present, weights=[config.generator_preference[k] for k in present])[0]
        drafted = world.question(rng.choice([f for f in facts if world.kind(f) == kind]), rng, shuffle=False)
        pairs.append((templates.for_generator(document), write_question(drafted) + EOS))
        fact = world.fact(rng, rng.choice(world.kinds))
        asked = world.question(fact, rng)
        right = rng.random() <= config.solver_skill[world.kind(fact)]
        answer = world.worked_answer(fact) if right else world.mistaken_answer(fact, asked, rng)
        pairs.append((templates.for_solver(asked), answer + EOS))
    return pairs


def _tokenizer(pairs: list[tuple[str, str]], pattern: str) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    backend.decoder = decoders.Fuse()
    numbers = [f"{space}{n}" for n in range(100) for space in ("", " ")]  # every number, whatever its tokens
    trainer = trainers.WordLevelTrainer(special_tokens=[EOS, UNK], show_progress=False)
    backend.train_from_iterator([text for pair in pairs for text in pair] + numbers, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS, unk_token=UNK)


def _pretrain(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]],
              config: ToyRecipe) -> None:
    """Next-token training on completions only (prompts are context, not targets)."""
    generator = torch.Generator().manual_seed(config.seed)
    encoded = []
    for prompt, completion in pairs:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        encoded.append((prompt_ids + completion_ids, len(prompt_ids)))
    steps = config.epochs * math.ceil(len(encoded) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01, foreach=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=steps,
                                                   pct_start=0.1)
    model.train()
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            rows = [encoded[i] for i in order[start : start + config.batch_size]]
            width = max(len(ids) for ids, _ in rows)
            ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, (row, prompt_length) in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
                labels[i, prompt_length : len(row)] = ids[i, prompt_length : len(row)]
                mask[i, : len(row)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % 100 == 0 or step == steps:
                log.info("toy base pretraining: epoch %d step %d/%d loss %.3f", epoch, step, steps, loss.item())


def default_cache_dir() -> Path:
    """``$INFUSER_CACHE`` or ``~/.cache/infuser`` (XDG_CACHE_HOME respected)."""
    if os.environ.get("INFUSER_CACHE"):
        return Path(os.environ["INFUSER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infuser"


def bundled_dir(config: ToyRecipe) -> Path:
    """Where the default build of ``config``'s world ships inside the package."""
    return Path(__file__).parent / config.bundle


def _bundled_matches(config: ToyRecipe) -> bool:
    recipe = bundled_dir(config) / "infuser_toy.json"
    return recipe.exists() and json.loads(recipe.read_text()).get("cache_key") == config.cache_key()


def ensure_toy_base(config: ToyRecipe | None = None, cache_dir: str | Path | None = None) -> Path:
    """Directory of the pretrained toy base of ``config`` (default: the aligned world's).

    The default recipe of each world ships inside the package (built by :func:`build_toy_base`
    from the same seed), so a fresh install needs no training; any other recipe is built on first
    use and cached under ``cache_dir``.
    """
    config = config or ToyBaseConfig()
    if cache_dir is None and _bundled_matches(config):
        return bundled_dir(config)
    target = Path(cache_dir or default_cache_dir()) / f"toy-base-{config.cache_key()}"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    return build_toy_base(config, target)


def build_toy_base(config: ToyRecipe, target: Path) -> Path:
    """Pretrain the toy base from scratch into ``target`` (atomically: all or nothing)."""
    started = time.perf_counter()
    torch.set_flush_denormal(True)  # decaying Adam moments of unused rows otherwise crawl on CPU
    log.info("building the toy base model into %s (first run only; takes a few minutes on CPU)", target)
    torch.manual_seed(config.seed)
    templates = PromptTemplates()
    pairs = _corpus(config, templates)
    tokenizer = _tokenizer(pairs, config.pretokenize_pattern())
    model_config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=max(config.num_heads // 2, 1), head_dim=config.hidden_size // config.num_heads,
        max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = Qwen3ForCausalLM(model_config)
    _pretrain(model, tokenizer, pairs, config)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    recipe = {"cache_key": config.cache_key(), "recipe": dataclasses.asdict(config)}
    (partial / "infuser_toy.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(target)  # atomic: a crash mid-build never leaves a half-written cache entry
    log.info("toy base model ready in %.0f s", time.perf_counter() - started)
    return target
