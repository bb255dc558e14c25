"""The RL update: exact gradient accumulation, old log-probs, KL reference, masks, metrics, rewards."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from infuser.advantages import BatchStdAdvantage, DuGRPOAdvantage, GroupStdAdvantage, MeanCentredAdvantage
from infuser.config import LOSS_TYPES, OptimizerConfig, PolicyLossConfig, RoleConfig, SamplingConfig, UpdateConfig
from infuser.model_config import LoraConfig, ModelConfig
from infuser.registry import resolve
from infuser.rl.loss import aggregate, per_token_policy_loss
from infuser.rl.rewards import RewardColumn, RewardStats, combine_rewards
from infuser.rl.update import PolicyUpdate
from infuser.roles.policy import PolicyRole
from infuser.rollout.engine import completion_logps
from infuser.rollout.rows import BatchTotals, RolloutBatch, ScoredRollouts

PROMPTS = ["Question: What is 3 plus 4?\nA) 6\nB) 7\nC) 8\nD) 9\nAnswer:", "Document: 5 times 2 is 10.\n",
           "Question: What is 9 minus 2?\nA) 5\nB) 6\nC) 7\nD) 8\nAnswer:"]
MAX_NEW = 10


def end_rows_early(batch: RolloutBatch, lengths: list[int], eos: int) -> RolloutBatch:
    """End row ``i`` with EOS after ``lengths[i]`` tokens (rows at the full budget stay truncated).

    The tiny test model rarely stops by itself; this gives batches of varied completion lengths.
    """
    width = batch.completion_ids.size(1)
    for row, length in enumerate(lengths):
        if length < width:
            batch.completion_ids[row, length - 1] = eos
        batch.completion_ids[row, length:] = eos
    batch.completion_mask = (torch.arange(width) < torch.tensor(lengths).unsqueeze(-1)).long()
    batch.truncated = torch.tensor([length == width for length in lengths])
    batch.sampling_logps = batch.sampling_logps * batch.completion_mask
    return batch


def _role(model_dir, lora: bool = False, gradient_checkpointing: bool = False, lr: float = 1e-3,
          **update) -> tuple[PolicyRole, PolicyUpdate]:
    loss = update.pop("loss", PolicyLossConfig())
    config = RoleConfig(
        model=ModelConfig(name_or_path=str(model_dir), gradient_checkpointing=gradient_checkpointing,
                          lora=LoraConfig(r=4, alpha=8) if lora else None),
        optimizer=OptimizerConfig(lr=lr, grad_clip=None),
        sampling=SamplingConfig(temperature=0.8, max_new_tokens=MAX_NEW),
        update=UpdateConfig(loss=loss, **update),
    )
    torch.manual_seed(0)
    role = PolicyRole(config)
    return role, PolicyUpdate.set_up(L.Fabric(accelerator="cpu", devices=1), role)


def _batch(role: PolicyRole) -> RolloutBatch:
    batch = role.rollout(PROMPTS, 3, torch.Generator().manual_seed(0))
    return end_rows_early(batch, [3, MAX_NEW, 7, 5, MAX_NEW, 9, 2, 6, 4], role.tokenizer.eos_token_id)


ADVANTAGES = torch.tensor([1.0, -0.5, 0.0, 0.7, -1.2, 0.3, -0.8, 0.0, 1.5])


def _step_gradients(role: PolicyRole) -> list[list[torch.Tensor]]:
    """Records the gradient at every optimizer step of ``role``."""
    steps: list[list[torch.Tensor]] = []
    params = role.trainable_parameters()
    role.optimizer_state().register_step_pre_hook(
        lambda *_: steps.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]))
    return steps


def _assert_close_lists(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 1e-6) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-5)


# -- the loss ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_micro_batch_shares_sum_to_the_mini_batch_loss(loss_type):
    generator = torch.Generator().manual_seed(0)
    per_token = torch.randn(7, 5, generator=generator)
    mask = (torch.rand(7, 5, generator=generator) > 0.3).long()
    totals = BatchTotals(sequences=7, tokens=int(mask.sum()), max_completion_length=6)
    whole = aggregate(per_token, mask, loss_type, totals)
    parts = [aggregate(per_token[rows], mask[rows], loss_type, totals) for rows in (slice(0, 2), slice(2, None))]
    torch.testing.assert_close(sum(parts), whole)


def test_dapo_uses_the_token_count_of_every_process():
    per_token, mask = torch.ones(2, 3), torch.ones(2, 3)
    local = BatchTotals(sequences=2, tokens=6, max_completion_length=3)
    shared = BatchTotals(sequences=2, tokens=6, max_completion_length=3, tokens_per_process=12.0)
    assert float(aggregate(per_token, mask, "dapo", local)) == 1.0
    assert float(aggregate(per_token, mask, "dapo", shared)) == 0.5
    assert float(aggregate(per_token, mask, "bnpo", shared)) == 1.0


def test_clipping_and_importance_weight():
    config = PolicyLossConfig(eps_low=0.2, eps_high=0.28, importance_cap=2.0)
    old = torch.zeros(1, 4)
    logps = torch.log(torch.tensor([[0.7, 1.0, 1.25, 1.4]]))
    sampling = torch.tensor([[0.0, -1.0, 0.0, 0.0]])  # weight exp(1) capped at 2 on token 1
    positive = per_token_policy_loss(logps, old, torch.tensor([1.0]), config, sampling)
    torch.testing.assert_close(positive.loss, -torch.tensor([[0.7, 2.0, 1.25, 1.28]]))
    assert positive.high_clipped.tolist() == [[False, False, False, True]]
    negative = per_token_policy_loss(logps, old, torch.tensor([-1.0]), config)
    torch.testing.assert_close(negative.loss, torch.tensor([[0.8, 1.0, 1.25, 1.4]]))
    assert negative.low_clipped.tolist() == [[True, False, False, False]]


def test_kl_needs_reference_logps_and_config_is_validated():
    with pytest.raises(ValueError, match="reference"):
        per_token_policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), PolicyLossConfig(beta=0.1))
    for bad in ({"loss_type": "sum"}, {"eps_low": 1.0}, {"importance_cap": 0.0}, {"beta": -1.0}):
        with pytest.raises(ValueError):
            PolicyLossConfig(**bad)
    with pytest.raises(ValueError):
        UpdateConfig(ppo_epochs=0)


# -- the update --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_micro_batching_gives_the_mini_batch_gradient(tiny_model_dir, loss_type):
    """Micro-batches of 2 (the last one shorter) accumulate exactly the gradient of one pass."""
    loss = PolicyLossConfig(loss_type=loss_type, entropy_coef=0.01)
    gradients = []
    for micro in (32, 2):
        role, update = _role(tiny_model_dir, loss=loss, micro_batch_size=micro)
        steps = _step_gradients(role)
        update(_batch(role), ADVANTAGES)
        gradients.append(steps[0])
    _assert_close_lists(gradients[1], gradients[0])


def test_zero_advantage_rows_are_skipped_without_changing_the_objective(tiny_model_dir):
    """The update forwards 7 of 9 rows, yet its gradient is that of the loss over all 9."""
    role, update = _role(tiny_model_dir)
    batch = _batch(role)
    steps = _step_gradients(role)
    stats = update(batch, ADVANTAGES)
    assert stats.rows == 7 and stats.optimizer_steps == 1

    reference, reference_update = _role(tiny_model_dir)
    mask = reference.loss_mask(batch)
    totals = BatchTotals(sequences=len(batch), tokens=int(mask.sum()), max_completion_length=MAX_NEW)
    reference.training_step(ScoredRollouts(batch, ADVANTAGES), totals).loss.loss.backward()
    _assert_close_lists(steps[0], [p.grad for p in reference.trainable_parameters()])


def test_several_epochs_and_mini_batches_keep_the_old_logps(tiny_model_dir):
    role, update = _role(tiny_model_dir, lr=3e-2, ppo_epochs=2, mini_batch_size=5)
    batch = _batch(role)
    calls = []
    original = role.training_step

    def spy(rollouts, totals, old_logps=None, ref_logps=None):
        calls.append(old_logps)
        return original(rollouts, totals, old_logps, ref_logps)

    role.training_step = spy  # what the update's forwards run, through the strategy wrapper
    stats = update(batch, ADVANTAGES)
    assert stats.optimizer_steps == 4  # 2 epochs x ceil(9 / 5)
    assert len(calls) == 4 and all(old is not None for old in calls)
    # every step compares against the policy before the first step, so later steps see ratios != 1
    assert stats.clip_ratio_region > 0
    assert math.isfinite(stats.loss) and stats.learning_rate == pytest.approx(3e-2)


def test_the_order_of_several_steps_comes_from_the_given_stream_only(tiny_model_dir):
    """Given a stream, an update's steps do not depend on torch's global stream (what other code
    drew before it): two benchmark arms handing the Solver the same rows get the same update."""
    weights = []
    for global_seed in (0, 1):
        role, update = _role(tiny_model_dir, lr=3e-2, mini_batch_size=4)
        batch = _batch(role)
        torch.manual_seed(global_seed)
        assert update(batch, ADVANTAGES, torch.Generator().manual_seed(7)).optimizer_steps == 3
        weights.append([p.detach().clone() for p in role.trainable_parameters()])
    _assert_close_lists(weights[0], weights[1], atol=0.0)


def test_kl_reference_is_a_frozen_copy_only_when_needed(tiny_model_dir):
    plain, plain_update = _role(tiny_model_dir)
    assert plain.reference is None
    role, update = _role(tiny_model_dir, lr=3e-2, loss=PolicyLossConfig(beta=0.1))
    assert role.reference is not None
    assert all(name.startswith("model.") for name in role.state_dict())  # the copy is no submodule
    assert len(role.trainable_parameters()) == len(list(role.model.parameters()))
    batch = _batch(role)
    first = update(batch, ADVANTAGES)
    assert first.kl == pytest.approx(0.0, abs=1e-6)  # the policy starts at the reference
    second = update(batch, ADVANTAGES)
    assert second.kl > 0 and math.isfinite(second.kl)


def test_kl_reference_with_lora_is_the_base_with_the_adapter_disabled(tiny_model_dir):
    role, update = _role(tiny_model_dir, lora=True, lr=5e-2, loss=PolicyLossConfig(beta=0.1))
    assert role.reference is None  # no second copy of the weights
    batch = _batch(role)
    update(batch, ADVANTAGES)
    second = update(batch, ADVANTAGES)
    assert second.kl > 0
    base, base_update = _role(tiny_model_dir)
    with torch.no_grad(), role._reference_policy() as reference:
        ours, _ = completion_logps(reference, batch, 0.8)
        theirs, _ = completion_logps(base.model, batch, 0.8)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # and the adapter is back on afterwards
        adapted, _ = completion_logps(role.model, batch, 0.8)
    assert (adapted - theirs).abs().max() > 1e-4


def test_gradient_checkpointing_changes_memory_not_gradients(tiny_model_dir):
    gradients = []
    for checkpointing in (False, True):
        role, update = _role(tiny_model_dir, gradient_checkpointing=checkpointing, micro_batch_size=4)
        assert any(getattr(m, "gradient_checkpointing", False) for m in role.model.modules()) == checkpointing
        steps = _step_gradients(role)
        batch = _batch(role)  # sampling runs in eval mode: checkpointing is off, the KV cache on
        assert role.model.training
        update(batch, ADVANTAGES)
        gradients.append(steps[0])
    _assert_close_lists(gradients[1], gradients[0])


def test_masked_truncated_rows_carry_no_gradient(tiny_model_dir):
    role, update = _role(tiny_model_dir, mask_truncated_completions=True)
    batch = _batch(role)
    truncated = batch.truncated.nonzero().squeeze(-1).tolist()
    assert truncated == [1, 4]
    steps = _step_gradients(role)
    stats = update(batch, ADVANTAGES)
    assert stats.rows == 5  # 9 rows - 2 zero advantages - 2 truncated
    changed = ADVANTAGES.clone()
    changed[truncated] = torch.tensor([5.0, -5.0])
    again, again_update = _role(tiny_model_dir, mask_truncated_completions=True)
    other = _step_gradients(again)
    again_update(batch, changed)
    _assert_close_lists(other[0], steps[0])


def test_stats_and_samples(tiny_model_dir):
    role, update = _role(tiny_model_dir, completions_to_log=3)
    batch = _batch(role)
    stats = update(batch, ADVANTAGES)
    assert not stats.skipped and stats.optimizer_steps == 1
    assert stats.entropy > 0 and math.isnan(stats.kl) and stats.grad_norm > 0
    assert stats.tokens == int(batch.completion_mask.sum())
    assert [s.completion for s in stats.samples] == [batch.texts[0], batch.texts[4], batch.texts[8]]
    assert stats.samples[0].prompt == PROMPTS[0] and stats.samples[1].advantage == pytest.approx(-1.2)
    metrics = stats.as_metrics("solver")
    for name in ("loss", "grad_norm", "learning_rate", "clip_ratio/low_mean", "clip_ratio/high_mean",
                 "clip_ratio/region_mean", "kl", "entropy"):
        assert f"solver/{name}" in metrics
    skipped = update(batch, torch.zeros(len(batch)))
    assert skipped.skipped and skipped.optimizer_steps == 0


def test_surrogate_loss_is_the_policy_term_only(tiny_model_dir):
    role, update = _role(tiny_model_dir, loss=PolicyLossConfig(beta=0.5, entropy_coef=0.5))
    plain, plain_update = _role(tiny_model_dir)
    batch = _batch(role)
    rollouts = ScoredRollouts(batch, ADVANTAGES)
    torch.testing.assert_close(role.surrogate_loss(rollouts), plain.surrogate_loss(rollouts))


# -- rewards -----------------------------------------------------------------------------------------


def test_combine_rewards_weights_and_missing_values():
    nan = float("nan")
    correct = RewardColumn("correct", torch.tensor([1.0, 0.0, nan, nan]), weight=1.0)
    formatted = RewardColumn("format", torch.tensor([1.0, nan, 1.0, nan]), weight=0.5)
    combined = combine_rewards([correct, formatted])
    assert combined.total[:3].tolist() == [1.5, 0.0, 0.5]
    assert math.isnan(combined.total[3])  # every reward missing: missing, not zero
    metrics = combined.metrics("solver")
    assert metrics["solver/rewards/correct/mean"] == 0.5 and metrics["solver/rewards/format/mean"] == 1.0
    with pytest.raises(ValueError, match="unique"):
        combine_rewards([correct, correct])
    with pytest.raises(ValueError, match="one value per sample"):
        combine_rewards([correct, RewardColumn("short", torch.ones(2))])


def test_reward_stats_under_trl_names():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, float("nan"), 0.5])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    stats = RewardStats.of(rewards, groups)
    finite = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    assert stats.reward == pytest.approx(float(finite.mean()))
    assert stats.reward_std == pytest.approx(float(finite.std()))
    assert stats.frac_reward_zero_std == pytest.approx(4 / 6)  # group 1 is flat, group 2 has one reward
    assert set(stats.as_metrics("solver")) == {"solver/reward", "solver/reward_std", "solver/frac_reward_zero_std"}


def test_builtin_advantage_estimators_are_registered_components():
    expected = {"grpo": GroupStdAdvantage, "dr_grpo": MeanCentredAdvantage, "batch_std": BatchStdAdvantage,
                "dugrpo": DuGRPOAdvantage}
    for name, cls in expected.items():
        assert resolve("advantage", name) is cls


def test_bf16_mixed_runs_the_update_and_the_influence_pass_under_autocast(tiny_model_dir):
    """On one device Fabric's wrapper calls a marked method (``training_step``, ``logps_step``) as the
    bare method, outside its forward's autocast, and influence calls the model itself: both must
    still compute in bfloat16 under ``bf16-mixed``, as they do under DDP."""
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir)), optimizer=OptimizerConfig(lr=1e-3),
                        sampling=SamplingConfig(max_new_tokens=MAX_NEW),
                        update=UpdateConfig(loss=PolicyLossConfig(beta=0.1), ppo_epochs=2))
    torch.manual_seed(0)
    role = PolicyRole(config)
    update = PolicyUpdate.set_up(L.Fabric(accelerator="cpu", devices=1, precision="bf16-mixed"), role)
    batch = _batch(role)
    linear = next(module for module in role.model.modules() if isinstance(module, torch.nn.Linear))
    seen: list[torch.dtype] = []
    linear.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    update(batch, ADVANTAGES)  # old and reference log-probs (logps_step), then training_step
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    role.surrogate_loss(ScoredRollouts(batch, ADVANTAGES))
    assert seen and set(seen) == {torch.bfloat16}
