"""The model card of ``final/<role>``: base, method and role, key settings, summary figures, loading."""

from __future__ import annotations

from pathlib import Path

import yaml

from infuser.config import LoopConfig, RoleConfig
from infuser.model_card import ModelCard, RunFacts, write_model_cards
from infuser.model_config import LoraConfig, ModelConfig

SUMMARY = {"iterations": 3, "target_accuracy_start": 0.25, "target_accuracy_end": 0.5,
           "heldout_accuracy_start": 0.2, "heldout_accuracy_end": 0.4, "target_exact_start": None,
           "target_exact_end": None, "heldout_exact_start": None, "heldout_exact_end": None,
           "seconds_total": 12.3, "seconds_by_stage": {}, "run_dir": "runs/x"}
FACTS = RunFacts(reward="InfluenceReward", influence="OptimizerAwareInfluence", loop=LoopConfig(iterations=3),
                 share_base=False, seed=7, summary=SUMMARY)


def _header(card: str) -> dict:
    _, header, _ = card.split("---\n", 2)
    return yaml.safe_load(header)


def test_a_whole_model_card_names_base_method_settings_figures_and_loading() -> None:
    card = ModelCard("solver", RoleConfig(model=ModelConfig(name_or_path="Qwen/Qwen3-0.6B")), FACTS).render()
    assert _header(card) == {"library_name": "transformers", "base_model": "Qwen/Qwen3-0.6B",
                             "tags": ["infuser", "grpo", "self-evolution", "solver"]}
    assert "# infuser solver: Qwen/Qwen3-0.6B" in card and "the **Solver**" in card
    assert "| `solver.optimizer.lr` |" in card and "| `influence` | `OptimizerAwareInfluence` |" in card
    assert "| `seed` | `7` |" in card and "| `loop.iterations` | `3` |" in card
    assert "| target accuracy | 0.250 | 0.500 |" in card and "| held-out accuracy | 0.200 | 0.400 |" in card
    assert "exact" not in card  # no canonical answers, no row
    assert 'AutoModelForCausalLM.from_pretrained("path/to/this/folder")' in card and "peft" not in card


def test_an_adapter_card_loads_through_peft_and_a_local_base_is_no_hub_id(tmp_path: Path) -> None:
    role = RoleConfig(model=ModelConfig(name_or_path=str(tmp_path), lora=LoraConfig(r=8)))
    card = ModelCard("generator", role, FACTS).render()
    assert _header(card)["library_name"] == "peft" and "base_model" not in _header(card)
    assert "AutoPeftModelForCausalLM.from_pretrained" in card and "--model.adapter path/to/this/folder" in card
    assert "r=8, alpha=32" in card and "the **Generator**" in card and "`InfluenceReward`" in card


def test_cards_are_written_beside_each_role(tmp_path: Path) -> None:
    roles = {"generator": RoleConfig(), "solver": RoleConfig()}
    for name in roles:
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text("peft's template card")
    write_model_cards(tmp_path, roles, FACTS)
    for name in roles:
        assert (tmp_path / name / "README.md").read_text().startswith("---\nlibrary_name: transformers\n")
