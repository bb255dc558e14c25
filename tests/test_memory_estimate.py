"""The memory estimate of the two real-model recipes, and the model shapes it rests on."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen3ForCausalLM

from benchmarks import memory_estimate as memory
from benchmarks import model_shapes as shapes


def test_shapes_count_the_parameters_transformers_builds():
    published = {"qwen3-0.6b": 596_049_920, "qwen3-1.7b": 1_720_574_976, "qwen3-4b": 4_022_468_096,
                 "qwen3-8b": 8_190_735_360}
    for name, shape in shapes.SHAPES.items():
        with torch.device("meta"):  # no memory, no initialisation
            model = Qwen3ForCausalLM(shapes.qwen3_config(shape))
        assert sum(p.numel() for p in model.parameters()) == shape.parameters, name
        if name in published:
            assert shape.parameters == published[name], name
    assert shapes.shape_of("Qwen/Qwen3-8B-Base") is shapes.SHAPES["qwen3-8b"]


def test_recipes_estimate(tmp_path, capsys):
    out = tmp_path / "memory.json"
    full, qlora = memory.main(["--json", str(out)])
    printed = capsys.readouterr().out
    assert "| GiB per process | qwen3-8b-base | qwen3-8b-base-qlora-1gpu |" in printed
    assert len(json.loads(out.read_text())["estimates"]) == 2
    for estimate in (full, qlora):
        assert set(estimate.stages) == set(memory.STAGES)
        for parts in (estimate.persistent, *estimate.components.values()):
            assert all(value >= 0 for value in parts.values())
        assert estimate.peak > sum(estimate.persistent.values()) > 0
        assert estimate.activations_without_checkpointing > estimate.activations_with_checkpointing > 0
        # the influence vectors are held from the target stage through the generator's update only
        for stage in ("generate", "solve", "influence", "generator_update"):
            assert estimate.components[stage]["influence vectors"] == estimate.influence_vectors > 0
        for stage in ("solver_update", "evaluate", "checkpoint"):
            assert "influence vectors" not in estimate.components[stage]
        # a GPU run serialises its checkpoint in host memory, not in the GPU's
        assert estimate.stages["checkpoint"] == 0
    assert (full.gpus_per_role, qlora.gpus_per_role) == (8, 1)
    # full fine-tuning: two float32 copies sharded over 8 GPUs, AdamW moments twice the weights
    assert full.persistent["weights"] == 2 * 8_190_735_360 * 4 // 8
    assert full.persistent["AdamW moments"] == 2 * full.persistent["weights"]
    # QLoRA: the whole shared base and both adapters with their AdamW state on one GPU take less
    # than full fine-tuning's per-GPU share of weights and optimizer state
    assert sum(qlora.persistent.values()) < full.persistent["weights"] + full.persistent["AdamW moments"]
    assert qlora.trainable_parameters["solver"] < 0.03 * full.trainable_parameters["solver"]
    assert qlora.persistent["weights (4-bit base)"] < 8_190_735_360 * 2  # less than one bfloat16 copy
    assert full.components["generate"]["gathered parameters (FSDP)"] > 0
    assert qlora.components["generate"]["gathered parameters (FSDP)"] == 0
    # both recipes fit an 80 GiB GPU (influence's vectors and FSDP's flat buffer hold a parameter shard each)
    assert qlora.peak < 80 * memory.GIB and full.peak < 80 * memory.GIB
    assert full.influence_vectors == \
        (memory.influence_buffers("preconditioned_cosine", False) + 1) * full.trainable_parameters["solver"] * 4 // 8


def test_any_model_directory_and_the_runs_own_lengths(tiny_model_dir, tmp_path):
    """A local model directory (its config.json, no download) and the run's lengths replace the
    recipe's model and worst cases; a CPU run counts the checkpoint's in-memory serialisation."""
    shape = shapes.shape_of(str(tiny_model_dir))
    assert shape.hidden_size == 32 and shape.num_hidden_layers == 1 and shape.vocab_size > 100
    arguments = ["--no_recipe", "--model", str(tiny_model_dir), "--set", "trainer.accelerator=cpu",
                 "--documents", "2", "--questions", "2", "--answers", "4", "--target_questions", "3",
                 "--micro_batch_size", "4", "--solver_completion_tokens", "10"]
    short = memory.main([*arguments, "--solver_prompt_tokens", "20"])[0]
    long = memory.main([*arguments, "--solver_prompt_tokens", "200"])[0]
    assert short.trainable_parameters["solver"] == shape.parameters
    assert long.stages["solve"] > short.stages["solve"] and long.stages["influence"] > short.stages["influence"]
    assert short.stages["checkpoint"] == sum(short.persistent.values()) > 0  # weights and moments, once more
    with pytest.raises(SystemExit):
        memory.main(["--no_recipe", "--model", str(tmp_path / "missing")])


def test_activation_coefficients_match_what_autograd_saves():
    """The float32 bytes saved per token and decoder layer (module docstring) are what transformers'
    Qwen3 keeps for the backward today: counted with saved-tensor hooks at two sequence lengths
    (the difference is per token; parameters are not counted), at the m10 shape (at the tiny one,
    16-wide heads, the attention kernel keeps more)."""
    shape = shapes.SHAPES["m10"]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(shapes.qwen3_config(shape, attn_implementation="sdpa"))

    def saved(tokens: int) -> int:
        storages = {}

        def pack(tensor):
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        ids = torch.randint(0, shape.vocab_size, (2, tokens))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(input_ids=ids, logits_to_keep=1, use_cache=False)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        return sum(size for pointer, size in storages.items() if pointer not in weights)

    measured = (saved(96) - saved(32)) / (2 * 64)
    role = memory.Role("solver", shape, "float32", False, False, None, "all-linear", 0.0, None, True, 1, 1, 1, 1, 1,
                       0.0)
    # per-token scalars (norm statistics, attention log-sum-exp) are left out of the formula: <1%
    assert memory.activation_bytes_per_token(role, checkpointing=False) == pytest.approx(measured, rel=0.03)


def test_shared_base_is_counted_once(tmp_path):
    recipe = memory.read_recipe(memory.DEFAULT_RECIPES[1])
    shared = memory.estimate(recipe)
    recipe.share_base = False
    separate = memory.estimate(recipe)
    assert separate.persistent["weights (4-bit base)"] == 2 * shared.persistent["weights (4-bit base)"]
