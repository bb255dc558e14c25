"""Architecture numbers of the Qwen3 dense models, as data, for benchmarks that must not download.

The memory estimate needs parameter counts and KV-cache widths of the real models, and the GPU
throughput benchmark builds randomly initialised models of the same shapes; neither may fetch a
checkpoint. The numbers are those of the published ``config.json`` files of ``Qwen/Qwen3-0.6B``,
``Qwen/Qwen3-1.7B``, ``Qwen/Qwen3-4B`` and ``Qwen/Qwen3-8B``; the ``-Base`` checkpoints share the
architecture (they differ in ``max_position_embeddings``, which sizes no tensor). All four use
``head_dim`` 128, 8 key-value heads, ``rope_theta`` 1e6, ``rms_norm_eps`` 1e-6 and a vocabulary of
151,936; only the 8B model has an output projection of its own (``tie_word_embeddings: false``).

``tiny`` is not a Qwen3 model: it is the same layout at a width a CPU test runs in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    # CPU tests only: the Qwen3 layout (GQA, q/k norms, SwiGLU) at toy width, a 512-token vocabulary
    ModelShape("tiny", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               head_dim=16, intermediate_size=128, vocab_size=512, tie_word_embeddings=True),
)}


def shape_of(name_or_path: str) -> ModelShape:
    """The shape of a shape name (``qwen3-8b``) or a Hub id naming one (``Qwen/Qwen3-8B-Base``)."""
    key = name_or_path.rsplit("/", 1)[-1].lower().removesuffix("-base")
    if key not in SHAPES:
        raise KeyError(f"no known shape for {name_or_path!r}; known: {', '.join(SHAPES)}")
    return SHAPES[key]


def qwen3_config(shape: ModelShape, **overrides):
    """A ``transformers.Qwen3Config`` of ``shape`` (``overrides`` for token ids, attention kernel...)."""
    from transformers import Qwen3Config

    settings = dict(hidden_size=shape.hidden_size, num_hidden_layers=shape.num_hidden_layers,
                    num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
                    head_dim=shape.head_dim, intermediate_size=shape.intermediate_size, vocab_size=shape.vocab_size,
                    tie_word_embeddings=shape.tie_word_embeddings, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                    max_position_embeddings=32768)
    return Qwen3Config(**{**settings, **overrides})
