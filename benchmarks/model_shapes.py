"""Architecture numbers of the Qwen3 dense models, as data, and random-weight checkpoints of them.

The memory estimate needs parameter counts and KV-cache widths of the real models, and the
throughput and memory benchmarks build randomly initialised models of the same shapes
(:func:`build_checkpoint`); none may fetch a checkpoint. The numbers are those of the published ``config.json`` files of ``Qwen/Qwen3-0.6B``,
``Qwen/Qwen3-1.7B``, ``Qwen/Qwen3-4B`` and ``Qwen/Qwen3-8B``; the ``-Base`` checkpoints share the
architecture (they differ in ``max_position_embeddings``, which sizes no tensor). All four use
``head_dim`` 128, 8 key-value heads, ``rope_theta`` 1e6, ``rms_norm_eps`` 1e-6 and a vocabulary of
151,936; only the 8B model has an output projection of its own (``tie_word_embeddings: false``).

``tiny``, ``m10`` and ``m40`` are not Qwen3 models: the same layout (GQA, q/k norms, SwiGLU with
an intermediate width of three hidden widths, tied embeddings) at widths a CPU runs: ``tiny`` in a
test's seconds, ``m10`` (8.9M parameters) and ``m40`` (33.6M) in a benchmark's minutes, where
per-parameter work already shows and activations are no longer the whole story.

Any other model is described by its ``config.json`` (:func:`shape_of` takes a local model
directory, a ``config.json`` file, or a Hub id whose ``config.json`` is in the local Hugging Face
cache; nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """What sizes a Qwen3 decoder's tensors (the fields of its ``config.json`` that do)."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_parameters(self) -> int:
        """The output projection's own weights (0 when it reuses the embedding)."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def lm_head_matmul_parameters(self) -> int:
        """Weights of the output projection's matrix multiplication, tied or not (for FLOPs)."""
        return self.vocab_size * self.hidden_size

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in_features, out_features)`` of each linear layer of one decoder layer (no biases in Qwen3)."""
        h, q, kv, i = self.hidden_size, self.num_attention_heads * self.head_dim, \
            self.num_key_value_heads * self.head_dim, self.intermediate_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_parameters_per_layer(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    @property
    def norm_parameters_per_layer(self) -> int:
        """Two RMSNorms of width ``hidden_size`` and the per-head q/k norms of width ``head_dim``."""
        return 2 * self.hidden_size + 2 * self.head_dim

    @property
    def decoder_linear_parameters(self) -> int:
        """Weights of every decoder linear layer: what 4-bit quantisation and ``all-linear`` LoRA act on."""
        return self.num_hidden_layers * self.linear_parameters_per_layer

    @property
    def parameters(self) -> int:
        """Every parameter, counted once (a tied output projection is the embedding)."""
        per_layer = self.linear_parameters_per_layer + self.norm_parameters_per_layer
        return (self.embedding_parameters + self.lm_head_parameters + self.num_hidden_layers * per_layer
                + self.hidden_size)  # + the final norm

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes per token in bfloat16: keys and values of every layer."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * 2

    def lora_parameters(self, rank: int, modules: list[str] | str = "all-linear") -> int:
        """Parameters of a LoRA adapter of ``rank`` on ``modules`` of every layer (``r * (in + out)`` each).

        ``all-linear`` is peft's meaning: every linear layer except the output projection.
        """
        shapes = self.linear_shapes()
        names = list(shapes) if modules == "all-linear" else [m for m in modules if m in shapes]
        return self.num_hidden_layers * sum(rank * sum(shapes[name]) for name in names)

    def as_dict(self) -> dict:
        return {**asdict(self), "parameters": self.parameters}


SHAPES: dict[str, ModelShape] = {shape.name: shape for shape in (
    ModelShape("qwen3-0.6b", hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
               head_dim=128, intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True),
    ModelShape("qwen3-1.7b", hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
               head_dim=128, intermediate_size=6144, vocab_size=151936, tie_word_embeddings=True),
    ModelShape("qwen3-4b", hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True),
    ModelShape("qwen3-8b", hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False),
    # CPU only: the Qwen3 layout at toy width (tests) and at two mid widths (CPU benchmarks)
    ModelShape("tiny", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               head_dim=16, intermediate_size=128, vocab_size=512, tie_word_embeddings=True),
    ModelShape("m10", hidden_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
               head_dim=64, intermediate_size=768, vocab_size=16384, tie_word_embeddings=True),
    ModelShape("m40", hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
               head_dim=64, intermediate_size=1536, vocab_size=16384, tie_word_embeddings=True),
)}


def shape_of(name_or_path: str) -> ModelShape:
    """The shape of a shape name (``qwen3-8b``), a Hub id naming one (``Qwen/Qwen3-8B-Base``), a local
    model directory or ``config.json``, or a Hub id whose ``config.json`` is in the local cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return shape_from_config(json.loads(path.read_text()), name=path.parent.name)
    key = name_or_path.rsplit("/", 1)[-1].lower().removesuffix("-base")
    if key in SHAPES:
        return SHAPES[key]
    cached = _cached_hub_config(name_or_path)
    if cached is not None:
        return shape_from_config(json.loads(cached.read_text()), name=name_or_path)
    raise KeyError(f"no known shape for {name_or_path!r}: not a model directory or config.json, not in the local "
                   f"Hugging Face cache, and not one of {', '.join(SHAPES)}")


def shape_from_config(config: dict, name: str) -> ModelShape:
    """A shape from a Qwen3-style ``config.json`` (Llama- and Qwen2-style ones read the same);
    ``head_dim`` defaults to ``hidden_size / num_attention_heads`` as in transformers."""
    config = config.get("text_config", config)  # multimodal wrappers keep the language model's here
    try:
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return ModelShape(name, hidden_size=hidden, num_hidden_layers=int(config["num_hidden_layers"]),
                          num_attention_heads=heads,
                          num_key_value_heads=int(config.get("num_key_value_heads") or heads),
                          head_dim=int(config.get("head_dim") or hidden // heads),
                          intermediate_size=int(config["intermediate_size"]), vocab_size=int(config["vocab_size"]),
                          tie_word_embeddings=bool(config.get("tie_word_embeddings", False)))
    except KeyError as missing:
        raise KeyError(f"{name}: config.json has no {missing.args[0]!r}; expected a decoder-only "
                       "transformer's config (hidden_size, num_hidden_layers, num_attention_heads, "
                       "intermediate_size, vocab_size)") from None


def _cached_hub_config(repo_id: str) -> Path | None:
    """``config.json`` of ``repo_id`` if the Hugging Face cache holds it (never downloads)."""
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def qwen3_config(shape: ModelShape, **overrides):
    """A ``transformers.Qwen3Config`` of ``shape`` (``overrides`` for token ids, attention kernel...)."""
    from transformers import Qwen3Config

    settings = dict(hidden_size=shape.hidden_size, num_hidden_layers=shape.num_hidden_layers,
                    num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
                    head_dim=shape.head_dim, intermediate_size=shape.intermediate_size, vocab_size=shape.vocab_size,
                    tie_word_embeddings=shape.tie_word_embeddings, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                    max_position_embeddings=32768)
    return Qwen3Config(**{**settings, **overrides})


FILLER = "<|w{}|>"  # the vocabulary entries beyond the toy tokenizer's words


def random_weights_tokenizer(vocab_size: int):
    """The bundled toy tokenizer's words (so toy documents and questions tokenise as in the toy
    runs), padded with filler tokens to ``vocab_size`` entries: a random model of a real shape
    samples over its whole vocabulary, and its texts decode to words and fillers."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from infuser.toy.base_model import EOS, UNK, ToyBaseConfig, bundled_dir

    toy = json.loads((bundled_dir(ToyBaseConfig()) / "tokenizer.json").read_text())
    vocab = dict(toy["model"]["vocab"])
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size {vocab_size} is below the toy tokenizer's {len(vocab)} words")
    vocab.update({FILLER.format(i): i for i in range(len(vocab), vocab_size)})
    toy["model"]["vocab"] = vocab
    backend = Tokenizer.from_str(json.dumps(toy))
    assert backend.get_vocab_size() == vocab_size, backend.get_vocab_size()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS, unk_token=UNK)


def build_checkpoint(shape: ModelShape, directory: Path, dtype: str = "float32", device: str = "cpu",
                     seed: int = 0) -> Path:
    """A randomly initialised Qwen3 model of ``shape`` and :func:`random_weights_tokenizer`, saved
    with ``save_pretrained`` to ``directory`` (token 0 is EOS and padding), for infuser to load
    through its ordinary ``from_pretrained`` path."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = random_weights_tokenizer(shape.vocab_size)
    torch.manual_seed(seed)
    with torch.device(device):  # initialise where it is fast (a 1.7B model takes minutes on a CPU)
        model = AutoModelForCausalLM.from_config(qwen3_config(shape, eos_token_id=0, pad_token_id=0, bos_token_id=None),
                                                 dtype=getattr(torch, dtype))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def random_prompts(count: int, tokens: int, generator) -> list[str]:
    """``count`` prompts of exactly ``tokens`` tokens of :func:`random_weights_tokenizer`: random words
    of the toy vocabulary that begin with a space, which the tokenizer's pre-tokenizer keeps whole."""
    import torch

    from infuser.toy.base_model import ToyBaseConfig, bundled_dir

    vocab = json.loads((bundled_dir(ToyBaseConfig()) / "tokenizer.json").read_text())["model"]["vocab"]
    words = sorted(word for word in vocab if len(word) > 1 and word[0] == " " and word[1:].isalnum())
    picks = torch.randint(len(words), (count, tokens), generator=generator)
    return ["".join(words[i] for i in row) for row in picks.tolist()]


def hash_parity(text: str) -> float:
    """A reward that random weights earn half the time: the parity of a hash of ``text``, 1.0 or 0.0.

    Deterministic (the same text always gets the same reward, on every machine and process) and
    unrelated to what the text says, so a group of sampled answers gets a spread of rewards and
    every GRPO stage has work to do, whatever the model."""
    return float(hashlib.blake2b(text.encode(), digest_size=1).digest()[0] & 1)


def report(table: str, records: list, json_path: Path | None) -> None:
    """What the shape benchmarks end with: the table printed, the records (dataclasses) as JSON."""
    from dataclasses import asdict as as_dict

    print(table)
    if json_path is not None:
        json_path.write_text(json.dumps({"records": [as_dict(r) for r in records]}, indent=2) + "\n")
        print(f"written to {json_path}")


def main(argv: list[str] | None = None) -> Path:
    """Write a random-weight checkpoint of a shape (for the benchmarks that take ``--model``)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("shape", choices=list(SHAPES))
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    directory = build_checkpoint(SHAPES[args.shape], args.out, args.dtype, seed=args.seed)
    print(f"{args.shape}: {SHAPES[args.shape].parameters:,} parameters, written to {directory}")
    return directory


if __name__ == "__main__":
    main()
