"""The memory estimate of the two real-model recipes, and the model shapes it rests on."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from transformers import Qwen3ForCausalLM

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("memory_estimate"), importlib.import_module("model_shapes")


def test_shapes_count_the_parameters_transformers_builds(benchmarks):
    _, shapes = benchmarks
    published = {"qwen3-0.6b": 596_049_920, "qwen3-1.7b": 1_720_574_976, "qwen3-4b": 4_022_468_096,
                 "qwen3-8b": 8_190_735_360}
    for name, shape in shapes.SHAPES.items():
        with torch.device("meta"):  # no memory, no initialisation
            model = Qwen3ForCausalLM(shapes.qwen3_config(shape))
        assert sum(p.numel() for p in model.parameters()) == shape.parameters, name
        if name in published:
            assert shape.parameters == published[name], name
    assert shapes.shape_of("Qwen/Qwen3-8B-Base") is shapes.SHAPES["qwen3-8b"]


def test_recipes_estimate(benchmarks, tmp_path, capsys):
    memory, _ = benchmarks
    out = tmp_path / "memory.json"
    full, qlora = memory.main(["--json", str(out)])
    printed = capsys.readouterr().out
    assert "| GiB per GPU | qwen3-8b-base | qwen3-8b-base-qlora-1gpu |" in printed
    assert len(json.loads(out.read_text())["estimates"]) == 2
    for estimate in (full, qlora):
        for section in (estimate.persistent, estimate.rollout, estimate.update, estimate.influence):
            assert all(value >= 0 for value in section.values())
        assert estimate.peak > sum(estimate.persistent.values()) > 0
        assert estimate.activations_without_checkpointing > estimate.activations_with_checkpointing > 0
        # influence forwards the Solver's update micro-batch, not a whole candidate or the target set
        assert estimate.influence["activations + logits (one micro-batch)"] <= \
            estimate.update["activations + logits (one micro-batch)"]
    assert (full.gpus_per_role, qlora.gpus_per_role) == (8, 1)
    # full fine-tuning: two float32 copies sharded over 8 GPUs, AdamW moments twice the weights
    assert full.persistent["weights"] == 2 * 8_190_735_360 * 4 // 8
    assert full.persistent["AdamW moments"] == 2 * full.persistent["weights"]
    # QLoRA: the whole shared base and both adapters with their AdamW state on one GPU take less
    # than full fine-tuning's per-GPU share of weights and optimizer state
    assert sum(qlora.persistent.values()) < full.persistent["weights"] + full.persistent["AdamW moments"]
    assert qlora.trainable_parameters["solver"] < 0.03 * full.trainable_parameters["solver"]
    assert qlora.persistent["weights (4-bit base)"] < 8_190_735_360 * 2  # less than one bfloat16 copy
    assert full.rollout["gathered parameters (FSDP)"] > 0 and qlora.rollout["gathered parameters (FSDP)"] == 0
    # both recipes fit an 80 GiB GPU: QLoRA on one, full fine-tuning sharded over 8 (influence's
    # buffers hold a parameter shard each)
    assert qlora.peak < 80 * memory.GIB and full.peak < 80 * memory.GIB
    assert full.influence["flat buffers"] == \
        memory.influence_buffers("preconditioned_cosine", False) * full.trainable_parameters["solver"] * 4 // 8


def test_shared_base_is_counted_once(benchmarks, tmp_path):
    memory, _ = benchmarks
    recipe = memory.read_recipe(memory.DEFAULT_RECIPES[1])
    shared = memory.estimate(recipe)
    recipe.share_base = False
    separate = memory.estimate(recipe)
    assert separate.persistent["weights (4-bit base)"] == 2 * shared.persistent["weights (4-bit base)"]
