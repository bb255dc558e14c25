"""Paths that differ on a CUDA device: a bfloat16 update, the sampler's KV cache, a 4-bit base shared
by two LoRA roles, influence vectors on the device. Skipped without CUDA (``-m cuda`` selects them;
``benchmarks/gpu_check.py`` runs them on a lent GPU and records the outcome)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig, UpdateConfig
from infuser.data.prompts import PromptTemplates
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.model_config import LoraConfig, ModelConfig, QuantizationConfig
from infuser.models import SharedBase, load_causal_lm, load_tokenizer
from infuser.rl.update import PolicyUpdate
from infuser.roles.generator import Generator
from infuser.roles.policy import PolicyRole
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps, generate
from infuser.rollout.rows import RolloutBatch, ScoredRollouts
from infuser.toy.world import ToyWorld

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PROMPTS = ["Question: What is 3 plus 4?\nA) 6\nB) 7\nC) 8\nD) 9\nAnswer:", "Document: 5 times 2 is 10.\n"]
QUESTIONS = ToyWorld().question_set("cuda-test", 6, seed=0)


def test_bfloat16_update_trains_every_weight_and_stays_finite(tiny_model_dir):
    """bf16-true on the GPU: weights, activations and AdamW's moments in bfloat16 (no autocast). A
    first AdamW step moves a weight by ~lr; at 1e-2 that is above half of bfloat16's spacing at 1.0
    (2**-8), so every weight moves, the norms' too (at 1e-3 theirs would round away)."""
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cuda", devices=1, precision="bf16-true")
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir), dtype="bfloat16"),
                        optimizer=OptimizerConfig(lr=1e-2), sampling=SamplingConfig(max_new_tokens=8),
                        update=UpdateConfig(micro_batch_size=4))
    role = PolicyRole(config, device=fabric.device)
    update = PolicyUpdate.set_up(fabric, role)
    assert all(p.dtype == torch.bfloat16 and p.is_cuda for p in role.trainable_parameters())
    batch = role.rollout(PROMPTS, 4, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in role.trainable_parameters()]
    stats = update(batch, torch.randn(len(batch), generator=torch.Generator().manual_seed(1)))
    assert stats.optimizer_steps == 1 and not stats.skipped and torch.isfinite(torch.tensor(stats.loss))
    assert all(not torch.equal(b, p) for b, p in zip(before, role.trainable_parameters()))
    assert all(p.grad is None for p in role.trainable_parameters())


def test_kv_cache_sampling_matches_generate_and_its_own_scoring(tiny_model_dir):
    """Greedy decoding through infuser's cache (shared prefill, rows dropped as they finish) picks
    ``model.generate``'s tokens, and the log-probs recorded while sampling are those of a scoring
    pass over the finished rows (float32: both sides sum the same terms in another order)."""
    model = load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir))).cuda().eval()
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    ours = generate(model, tokenizer, PROMPTS, SamplingConfig(do_sample=False, max_new_tokens=8))
    for row, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to("cuda")
        reference = model.generate(**ids, do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
        expected = reference[0, ids["input_ids"].size(1):].tolist()
        length = int(ours.completion_mask[row].sum())
        assert ours.completion_ids[row, :length].tolist() == expected[:length]
    sampled = generate(model, tokenizer, PROMPTS, SamplingConfig(max_new_tokens=8), num_samples=3,
                       stream=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scored, _ = completion_logps(model, sampled)
    mask = sampled.completion_mask.bool()
    torch.testing.assert_close(scored[mask], sampled.sampling_logps[mask], rtol=0, atol=1e-4)


def test_4bit_base_shared_by_two_lora_roles(tiny_model_dir):
    """QLoRA with ``share_base``: one 4-bit base on the GPU, each role's update moves its own adapter only."""
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cuda", devices=1)
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir), lora=LoraConfig(r=4, alpha=8),
                                          quantization=QuantizationConfig()),
                        optimizer=OptimizerConfig(lr=1e-2), sampling=SamplingConfig(max_new_tokens=8))
    shared = SharedBase(fabric.device)
    generator = Generator(config, PromptTemplates(), device=fabric.device, shared=shared)
    solver = Solver(config, PromptTemplates(), device=fabric.device, shared=shared)
    updates = {role: PolicyUpdate.set_up(fabric, role) for role in (generator, solver)}
    assert generator.model is solver.model
    assert any("4bit" in type(module).__name__ for module in solver.model.modules())
    adapters = {role: [p.detach().clone() for p in role.trainable_parameters()] for role in (generator, solver)}
    answers = solver.answer(QUESTIONS, 4, torch.Generator().manual_seed(0))
    stats = updates[solver](answers.batch, torch.randn(len(answers.batch), generator=torch.Generator().manual_seed(1)))
    assert stats.optimizer_steps == 1
    assert any(not torch.equal(b, p) for b, p in zip(adapters[solver], solver.trainable_parameters()))
    assert all(torch.equal(b, p) for b, p in zip(adapters[generator], generator.trainable_parameters()))


def test_influence_vectors_live_on_the_device_and_are_released(tiny_model_dir):
    """optimizer_aware on the GPU scores the CPU's rollouts as the CPU does (float32 sums in another
    order: a relative 1e-4 is ~1000x float32's rounding over these few thousand terms), keeps its
    vectors on the device, and ``release`` gives their memory back."""
    solvers, updates = {}, {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir)),
                            optimizer=OptimizerConfig(lr=1e-3), sampling=SamplingConfig(max_new_tokens=8))
        solvers[device] = Solver(config, PromptTemplates())
        updates[device] = PolicyUpdate.set_up(L.Fabric(accelerator=device, devices=1), solvers[device])
    answers = solvers["cpu"].answer(QUESTIONS, 4, torch.Generator().manual_seed(0))
    advantages = torch.randn(len(answers.batch), generator=torch.Generator().manual_seed(1))
    scores = {}
    for device, solver in solvers.items():
        batch = RolloutBatch.of_rows(answers.batch.unpadded_rows(), solver.tokenizer.pad_token_id,
                                     torch.device(device))
        updates[device](batch, advantages)  # the same AdamW moments on both
        candidates = [ScoredRollouts(batch.select(answers.rows_of(q)), advantages[answers.rows_of(q)])
                      for q in range(len(QUESTIONS))]
        estimator = OptimizerAwareInfluence()
        if device == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
        estimator.prepare(solver, ScoredRollouts(batch, advantages))
        scores[device] = estimator.score(solver, candidates)
        if device == "cuda":
            assert estimator._target.is_cuda and estimator._adam.v_term.is_cuda
            estimator.release()
            torch.cuda.synchronize()
            assert torch.cuda.memory_allocated() <= before
    torch.testing.assert_close(scores["cuda"], scores["cpu"], rtol=1e-4, atol=1e-7)
