"""The real-model recipes parse and print offline: ``--print_config`` loads no model and opens no connection."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from infuser.cli import main

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every attempt to load a model or tokenizer or to open a connection.

    Loading is refused at transformers' entry points, which every path of infuser's goes through
    (patching infuser's own functions would leak: modules that import them by name keep the patch).
    """
    attempts: list[str] = []

    def refuse(what: str):
        def refused(*args, **kwargs):
            attempts.append(what)
            raise AssertionError(f"--print_config must not call {what}")
        return refused

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    for owner in (AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase):
        monkeypatch.setattr(owner, "from_pretrained", refuse(f"{owner.__name__}.from_pretrained"))
    return attempts


def _print_config(recipe: str, capsys: pytest.CaptureFixture[str]) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / recipe), "--print_config"])
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    return yaml.safe_load(out.out)


def test_full_fine_tuning_recipe_prints_the_reference_settings(offline, capsys):
    config = _print_config("qwen3-8b-base.yaml", capsys)
    assert offline == []
    generator, solver = config["generator"], config["solver"]
    for role in (generator, solver):
        assert role["model"]["name_or_path"] == "Qwen/Qwen3-8B-Base"
        assert role["model"]["lora"] is None
        assert role["model"]["gradient_checkpointing"] is True
        assert role["optimizer"]["betas"] == [0.9, 0.999] and role["optimizer"]["weight_decay"] == 0.01
        assert role["update"]["loss"]["beta"] == 0.0 and role["update"]["loss"]["eps_high"] == 0.2
        assert role["sampling"]["temperature"] == 0.7
    assert generator["optimizer"]["lr"] == 4e-6 and solver["optimizer"]["lr"] == 2e-6
    assert solver["sampling"]["max_new_tokens"] == 8192
    trainer = config["trainer"]
    assert (trainer["accelerator"], trainer["devices"], trainer["strategy"], trainer["precision"]) == \
        ("gpu", 8, "fsdp", "bf16-mixed")
    loop = config["loop"]
    assert (loop["iterations"], loop["documents_per_iteration"], loop["questions_per_document"],
            loop["answers_per_question"], loop["target_answers_per_question"]) == (100, 128, 8, 8, 8)
    assert config["documents"]["class_path"].endswith("JsonlDocuments")
    assert config["target_set"]["class_path"].endswith("JsonlQuestions")
    assert config["seed"] == 42


def test_qlora_recipe_prints_one_gpu_with_a_shared_4bit_base(offline, capsys):
    config = _print_config("qwen3-8b-base-qlora-1gpu.yaml", capsys)
    assert offline == []
    assert config["share_base"] is True
    assert config["trainer"]["devices"] == 1 and config["trainer"]["precision"] == "bf16-mixed"
    for role in (config["generator"], config["solver"]):
        model = role["model"]
        assert model["quantization"] == {"quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
        assert model["lora"]["r"] == 64 and model["lora"]["target_modules"] == "all-linear"
    assert config["solver"]["sampling"]["max_new_tokens"] == 8192
    assert config["loop"]["documents_per_iteration"] == 128


def test_instruct_recipe_layers_chat_templates_over_the_base_recipe(offline, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "qwen3-8b-base.yaml"), "--config",
              str(CONFIGS / "qwen3-4b-instruct.yaml"), "--print_config"])
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    config = yaml.safe_load(out.out)
    assert offline == []
    for role in (config["generator"], config["solver"]):
        model = role["model"]
        assert (model["name_or_path"], model["chat_template"]) == ("Qwen/Qwen3-4B-Instruct-2507", True)
        assert model["gradient_checkpointing"] is True  # the base recipe's settings stay
    assert config["prompts"]["solver"].endswith("in \\boxed{{}}.") and config["generator"]["optimizer"]["lr"] == 6e-6
    assert "follow this format exactly" in config["prompts"]["generator"]
    assert config["trainer"]["strategy"] == "fsdp" and config["loop"]["iterations"] == 100


def test_code_recipe_layers_the_code_task_over_the_qlora_recipe(offline, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "qwen3-8b-base-qlora-1gpu.yaml"), "--config",
              str(CONFIGS / "qwen3-8b-base-code.yaml"), "--print_config"])
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    config = yaml.safe_load(out.out)
    assert offline == []
    task = config["task"]
    assert task["class_path"] == "infuser.tasks.code.CodeTask"
    assert task["init_args"]["executor"]["class_path"] == "infuser.sandbox.local.LocalExecutor"
    assert config["target_set"]["class_path"] == config["heldout_set"]["class_path"] == \
        "infuser.tasks.code_problems.JsonlCodeProblems"
    assert config["loop"]["eval_benchmarks"]["benchmarks"][0]["name"] == "humaneval"
    assert config["trainer"]["devices"] == 1 and config["share_base"] is True  # the QLoRA recipe's
    assert "Signature: def <name>(<arguments>):" in config["prompts"]["generator"]
