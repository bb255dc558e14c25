"""Loading models from configuration: dtype, attention, QLoRA, checkpointing, and the refusals of
combinations that would load but could not train."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from transformers import AutoModelForCausalLM

from infuser.config import ConfigurationError, OptimizerConfig, RoleConfig, SamplingConfig, TrainerConfig
from infuser.data.prompts import PromptTemplates
from infuser.fit import fit
from infuser.model_config import LoraConfig, ModelConfig, QuantizationConfig
from infuser.models import SharedBase, device_map, load_causal_lm, load_tokenizer
from infuser.rl.update import PolicyUpdate
from infuser.roles.generator import Generator
from infuser.roles.policy import PolicyRole
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps, generate

PROMPTS = ["Question: What is 3 plus 4?\nA) 6\nB) 7\nC) 8\nD) 9\nAnswer:", "Document: 5 times 2 is 10.\n",
           "Question: What is 9 minus 2?\nA) 5\nB) 6\nC) 7\nD) 8\nAnswer:"]
ADVANTAGES = torch.tensor([1.0, -0.5, 0.3, 0.7, -1.2, 0.3, -0.8, 0.2, 1.5])
DEVICE = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def _four_bit_problem() -> str | None:
    """Why bitsandbytes cannot run 4-bit layers on ``DEVICE``, or ``None`` when it can."""
    try:
        import bitsandbytes.functional as bnb

        quantized, state = bnb.quantize_4bit(torch.randn(64, 64, device=DEVICE), quant_type="nf4")
        bnb.dequantize_4bit(quantized, state)
    except Exception as error:  # noqa: BLE001 - any failure means: no 4-bit layers on this machine
        where = "the CPU, and no CUDA device is visible" if DEVICE.type == "cpu" else str(DEVICE)
        return f"bitsandbytes cannot quantize to 4 bits on {where} ({type(error).__name__}: {error})"
    return None


FOUR_BIT_PROBLEM = _four_bit_problem()
needs_4bit = pytest.mark.skipif(FOUR_BIT_PROBLEM is not None, reason=FOUR_BIT_PROBLEM or "")


def _role(model_dir, seed: int = 0, **model) -> tuple[PolicyRole, PolicyUpdate, L.Fabric]:
    """A LoRA role set up under Fabric the way ``fit`` does it."""
    torch.manual_seed(seed)
    fabric = L.Fabric(accelerator="cuda" if DEVICE.type == "cuda" else "cpu", devices=1)
    config = RoleConfig(model=ModelConfig(name_or_path=str(model_dir), lora=LoraConfig(r=4, alpha=8), **model),
                        optimizer=OptimizerConfig(lr=5e-2, grad_clip=None),
                        sampling=SamplingConfig(temperature=0.8, max_new_tokens=8))
    role = PolicyRole(config, device=fabric.device)
    return role, PolicyUpdate.set_up(fabric, role), fabric


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of the model's own state dict (4-bit weights and their quantization state included)."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {key for key in before if not torch.equal(before[key], after[key])}


def _is_4bit(model: torch.nn.Module) -> bool:
    linear = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    return type(linear).__name__ == "Linear4bit" and type(linear.weight).__name__ == "Params4bit" \
        and linear.weight.dtype == torch.uint8


# -- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_and_attention_implementation_reach_the_model(tiny_model_dir, dtype):
    model = load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir), dtype=dtype, attn_implementation="eager"))
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    assert model.config._attn_implementation == "eager"
    assert model.training


def test_remote_code_runs_only_when_asked_for(tiny_model_dir, monkeypatch):
    seen: list[bool] = []
    original = AutoModelForCausalLM.from_pretrained

    def recording(*args, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording)
    load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir)))
    load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir), trust_remote_code=True))
    assert seen == [False, True]


@pytest.mark.parametrize("key, instead", [("trust_remote_code", "model.trust_remote_code"),
                                          ("quantization_config", "model.quantization"),
                                          ("device_map", "own device")])
def test_extra_kwargs_cannot_bypass_a_key_of_their_own(key, instead):
    with pytest.raises(ValueError, match=f"model.extra_kwargs: .*{instead}"):
        ModelConfig(extra_kwargs={key: True})


def test_a_4bit_base_without_lora_is_refused():
    with pytest.raises(ValueError, match="model.quantization: .*model.lora"):
        ModelConfig(quantization=QuantizationConfig())


def test_quantization_config_becomes_a_bitsandbytes_config():
    config = QuantizationConfig(quant_type="fp4", double_quant=False, compute_dtype="float16").bitsandbytes()
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "fp4" and config.bnb_4bit_use_double_quant is False
    assert config.bnb_4bit_compute_dtype == torch.float16
    default = QuantizationConfig().bitsandbytes()
    assert (default.bnb_4bit_quant_type, default.bnb_4bit_use_double_quant, default.bnb_4bit_compute_dtype) == (
        "nf4", True, torch.bfloat16)


def test_device_map_puts_the_model_on_the_process_device():
    assert device_map(torch.device("cuda", 3)) == {"": 3}
    assert device_map(torch.device("cpu")) == {"": "cpu"}


# -- gradient checkpointing ---------------------------------------------------------------------


def test_sampling_under_gradient_checkpointing_keeps_the_kv_cache(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir), gradient_checkpointing=True)
    model, tokenizer = load_causal_lm(config), load_tokenizer(config)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    assert model.config.use_cache is False  # the default for training forwards only
    widths: list[int] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].size(1)),
                                    with_kwargs=True)
    batch = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=8), 2, torch.Generator().manual_seed(0))
    assert model.training  # back in train mode, where the update checkpoints
    assert widths[0] > 1 and set(widths[1:]) == {1}  # one prefill, then one new token per step
    # Fed one token at a time, the sampler's log-probs are the full-context ones only if the
    # cache carried the context.
    with torch.no_grad():
        full, _ = completion_logps(model, batch, share_prompts=False)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logps[mask], full[mask], atol=1e-4, rtol=1e-4)


# -- QLoRA --------------------------------------------------------------------------------------


@needs_4bit
@pytest.mark.parametrize("checkpointing", [False, True])
def test_qlora_trains_the_adapter_and_leaves_the_4bit_base_bit_identical(tiny_model_dir, checkpointing):
    role, update, _ = _role(tiny_model_dir, quantization=QuantizationConfig(), gradient_checkpointing=checkpointing)
    assert _is_4bit(role.model)
    assert any(getattr(m, "gradient_checkpointing", False) for m in role.model.modules()) == checkpointing
    trainable = [name for name, p in role.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in name for name in trainable)
    before = _snapshot(role.model)
    batch = role.rollout(PROMPTS, 3, torch.Generator().manual_seed(0))
    assert update(batch, ADVANTAGES).optimizer_steps == 1
    changed = _changed(before, _snapshot(role.model))
    assert changed and all(".lora_" in key for key in changed)
    assert any(".lora_B." in key for key in changed)
    assert _is_4bit(role.model)


@needs_4bit
def test_qlora_checkpoint_holds_the_adapter_and_loads_back(tiny_model_dir, tmp_path):
    """A 4-bit base's state dict does not load back strictly; the checkpoint leaves it out."""
    role, update, fabric = _role(tiny_model_dir, quantization=QuantizationConfig(compute_dtype="float32"))
    update(role.rollout(PROMPTS, 3, torch.Generator().manual_seed(0)), ADVANTAGES)
    fabric.save(tmp_path / "ckpt", {"solver": role})
    saved = torch.load(tmp_path / "ckpt", weights_only=True)["solver"]
    assert len(saved) == len(role.trainable_parameters()) and all(".lora_" in key for key in saved)
    fresh, _, fresh_fabric = _role(tiny_model_dir, seed=1, quantization=QuantizationConfig(compute_dtype="float32"))
    fresh_fabric.load(tmp_path / "ckpt", {"solver": fresh})
    for ours, theirs in zip(fresh.trainable_parameters(), role.trainable_parameters(), strict=True):
        assert torch.equal(ours, theirs)


@needs_4bit
def test_two_adapters_on_one_4bit_base_train_independently(tiny_model_dir):
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cuda" if DEVICE.type == "cuda" else "cpu", devices=1)
    shared = SharedBase(fabric.device)
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir), lora=LoraConfig(r=4, alpha=8),
                                          quantization=QuantizationConfig(compute_dtype="float32")),
                        optimizer=OptimizerConfig(lr=5e-2, grad_clip=None), sampling=SamplingConfig(max_new_tokens=8))
    roles = [Generator(config, PromptTemplates(), shared=shared), Solver(config, PromptTemplates(), shared=shared)]
    updates = [PolicyUpdate.set_up(fabric, role) for role in roles]
    for role, update in zip(roles, updates):
        before = _snapshot(shared.model)
        assert update(role.rollout(PROMPTS, 3, torch.Generator().manual_seed(0)), ADVANTAGES).optimizer_steps == 1
        changed = _changed(before, _snapshot(shared.model))
        assert changed and all(f".{role.adapter_name}." in key for key in changed)
    assert _is_4bit(shared.model)


# -- refused before any model loads -------------------------------------------------------------


def _qlora(model_dir) -> RoleConfig:
    return RoleConfig(model=ModelConfig(name_or_path=str(model_dir), lora=LoraConfig(),
                                        quantization=QuantizationConfig()))


@pytest.mark.parametrize("trainer, key", [
    (TrainerConfig(precision="bf16-true"), "trainer.precision: bf16-true"),
    (TrainerConfig(precision="16-true"), "trainer.precision: 16-true"),
    (TrainerConfig(strategy="fsdp"), "trainer.strategy: fsdp"),
    (TrainerConfig(strategy="deepspeed_stage_3"), "trainer.strategy: deepspeed_stage_3"),
])
def test_4bit_base_with_a_precision_or_strategy_that_breaks_it_is_refused(no_model_loading, tiny_model_dir, tmp_path,
                                                                         trainer, key):
    with pytest.raises(ConfigurationError, match=key) as refused:
        fit(solver=_qlora(tiny_model_dir), trainer=trainer, run_dir=str(tmp_path / "run"))
    assert "solver.model.quantization" in str(refused.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["fsdp_cpu_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload"])
def test_strategies_that_gather_parameters_only_inside_their_wrapper_are_refused(no_model_loading, tmp_path,
                                                                                 strategy):
    """infuser samples and computes influence by calling each model itself: a sharding strategy
    must gather parameters in every sharded module (FSDP2, ``strategy: fsdp``), not in a wrapper."""
    with pytest.raises(ConfigurationError, match=f"trainer.strategy: {strategy}.*use `fsdp`"):
        fit(trainer=TrainerConfig(accelerator="cpu", strategy=strategy), run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_4bit_base_with_a_precision_that_keeps_it_passes_the_checks(no_model_loading, tiny_model_dir, tmp_path,
                                                                    precision):
    with pytest.raises(AssertionError, match="a model was loaded"):
        fit(generator=RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir))), solver=_qlora(tiny_model_dir),
            trainer=TrainerConfig(accelerator="cpu", precision=precision), run_dir=str(tmp_path / "run"))
