"""Build, pretrain and cache the toy base model (a few hundred thousand parameters, CPU minutes).

The base must be a plausible starting point for both roles: as a Generator it should usually
draft well-formed questions with correct golden answers copied from the document; as a Solver it
should be good at sums and differences and weak, but not hopeless, at products (pass rate well
between 0 and 1, so RL has signal). We get there with a synthetic corpus whose Solver examples
are labelled correctly with a per-kind probability (``solver_skill``); wrong labels pick a random
distractor. Everything is derived from a seed, and the result is cached under a key that hashes
every setting, so a second run loads it in a second through the ordinary ``from_pretrained`` path.
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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from infuser.data.prompts import PromptTemplates
from infuser.data.questions import MCQuestion
from infuser.toy.world import KINDS, Fact, ToyWorld, ToyWorldConfig

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
UNK = "<|unk|>"
_FORMAT_VERSION = 3  # bump when the corpus or training recipe changes meaning


@dataclass
class ToyBaseConfig:
    """Recipe of the toy base model; every field enters the cache key.

    Attributes:
        solver_skill: per kind, how often the pretraining corpus's worked answers are right
            (wrong ones pick another option): the base Solver's prior competence.
        required_kinds: kinds every pretraining document states (as the toy config's documents
            do), so the base learns to copy them even when it rarely asks about them.
        generator_preference: how the pretraining Generator picks which fact to ask about: the
            base Generator's default curriculum, deliberately far from the target mix.
    """

    seed: int = 0
    world: ToyWorldConfig = field(default_factory=ToyWorldConfig)
    solver_skill: dict[str, float] = field(default_factory=lambda: {"sum": 0.9, "difference": 0.9, "product": 0.3})
    required_kinds: list[str] = field(default_factory=lambda: ["product"])
    generator_preference: dict[str, float] = field(
        default_factory=lambda: {"sum": 0.35, "difference": 0.35, "product": 0.30})
    examples: int = 32000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 3e-3

    def cache_key(self) -> str:
        payload = json.dumps({"v": _FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def generator_completion(question: MCQuestion) -> str:
    """What a well-behaved Generator writes for ``question`` (the parser's format)."""
    return f"{question.render()}\nAnswer: {question.answer_letter}"


def solver_completion(fact: Fact, believed: int) -> str:
    """A short worked answer: the computed value, then that value boxed.

    Boxing the option's text rather than its letter is a valid multiple-choice answer (the
    grader maps it to the option) and spares the tiny model a lookup it learns slowly.
    """
    operator = fact.sentence().split()[1]
    return f" {fact.left} {operator} {fact.right} is {believed}, so \\boxed{{{believed}}}"


def canonical_answer(question: MCQuestion) -> str | None:
    """The right answer to a toy question as the toy base learned to write it (``None`` for a
    question the toy world does not word): what a Solver's exact accuracy is measured on."""
    fact = ToyWorld.fact_of(question.question)
    return None if fact is None else solver_completion(fact, fact.value)


def _corpus(config: ToyBaseConfig, templates: PromptTemplates) -> list[tuple[str, str]]:
    """(prompt, completion) pairs: Generator drafting examples and noisy Solver answers, 1:1."""
    rng = random.Random(config.seed)
    world = ToyWorld(config.world)
    pairs = []
    for _ in range(config.examples // 2):
        document, facts = world.document(rng, tuple(config.required_kinds))
        present = sorted({f.kind for f in facts})
        kind = rng.choices(present, weights=[config.generator_preference[k] for k in present])[0]
        drafted = world.question(rng.choice([f for f in facts if f.kind == kind]), rng, shuffle=False)
        pairs.append((templates.for_generator(document), generator_completion(drafted) + EOS))
        fact = world.fact(rng, rng.choice(KINDS))
        asked = world.question(fact, rng)
        believed = fact.value
        if rng.random() > config.solver_skill[fact.kind]:
            believed = int(rng.choice([o for o in asked.options if o != str(fact.value)]))
        pairs.append((templates.for_solver(asked), solver_completion(fact, believed) + EOS))
    return pairs


# Words (with their leading space), numbers, single symbols, single whitespace characters: every
# number the toy world uses is one token, and decoding is exact concatenation.
_PRETOKENIZE = r" ?[A-Za-z]+| ?\d+| ?[^A-Za-z\d\s]|\s"


def _tokenizer(pairs: list[tuple[str, str]]) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated")
    backend.decoder = decoders.Fuse()
    numbers = [f"{space}{n}" for n in range(100) for space in ("", " ")]
    trainer = trainers.WordLevelTrainer(special_tokens=[EOS, UNK], show_progress=False)
    backend.train_from_iterator([text for pair in pairs for text in pair] + numbers, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS, unk_token=UNK)


def _pretrain(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]],
              config: ToyBaseConfig) -> None:
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


BUNDLED_DIR = Path(__file__).parent / "pretrained"


def _bundled_matches(config: ToyBaseConfig) -> bool:
    recipe = BUNDLED_DIR / "infuser_toy.json"
    return recipe.exists() and json.loads(recipe.read_text()).get("cache_key") == config.cache_key()


def ensure_toy_base(config: ToyBaseConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Directory of the pretrained toy base.

    The default recipe ships inside the package (built by :func:`build_toy_base` from the same
    seed), so a fresh install needs no training; any other recipe is built on first use and
    cached under ``cache_dir``.
    """
    config = config or ToyBaseConfig()
    if cache_dir is None and _bundled_matches(config):
        return BUNDLED_DIR
    target = Path(cache_dir or default_cache_dir()) / f"toy-base-{config.cache_key()}"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    return build_toy_base(config, target)


def build_toy_base(config: ToyBaseConfig, target: Path) -> Path:
    """Pretrain the toy base from scratch into ``target`` (atomically: all or nothing)."""
    started = time.perf_counter()
    torch.set_flush_denormal(True)  # decaying Adam moments of unused rows otherwise crawl on CPU
    log.info("building the toy base model into %s (first run only; takes a few minutes on CPU)", target)
    torch.manual_seed(config.seed)
    templates = PromptTemplates()
    pairs = _corpus(config, templates)
    tokenizer = _tokenizer(pairs)
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


if __name__ == "__main__":  # python -m infuser.toy.base_model OUTPUT_DIR  (rebuilds the bundled base)
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else BUNDLED_DIR
    if output.exists():
        shutil.rmtree(output)
    build_toy_base(ToyBaseConfig(), output)
