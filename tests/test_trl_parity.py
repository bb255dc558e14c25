"""infuser's clipped objective against TRL's ``GRPOTrainer``, term for term.

Both sides get the same tiny model (two copies of one checkpoint), the same prompt/completion token
ids, advantages, old / sampler / reference log-probs and settings. TRL's own loss code runs
(``GRPOTrainer.compute_loss`` on an inputs dict as its ``_generate_and_score_completions`` builds
it); its per-token loss is read from the frame of ``_compute_loss``. The per-token losses, the
aggregated losses and every parameter gradient must agree to 1e-5.

Differences by design, each pinned by a test below:

* Gradient accumulation. TRL normalises ``grpo``, ``dr_grpo`` and ``bnpo`` (and the entropy bonus)
  per micro-batch and divides by the number of accumulation steps, so unequal micro-batches change
  the objective. infuser normalises every micro-batch by the totals of its mini-batch: the
  accumulated gradient is exactly the whole mini-batch's (``test_accumulation_*``). On one
  micro-batch, as in the main test, the two are the same.
* Truncated importance sampling. TRL applies it only when sampling with vLLM (its
  ``token_truncate`` mode); infuser whenever the sampler's log-probs are present and
  ``importance_cap`` is set, because its own sampler's numerics and top-k/top-p filtering differ
  from the trainer's forward too. The test builds TRL's ``importance_sampling_ratio`` input with
  TRL's formula, ``clamp(exp(old - sampler), max=C)``.
* ``bnpo`` vs ``dapo``. TRL's ``dapo`` divides by the token count of the whole generation batch
  (all processes, all accumulation steps), ``bnpo`` by the micro-batch's. In infuser ``dapo``
  is the token-mean over every process's mini-batch and ``bnpo`` over this process's: identical on
  one process.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402  (a TRL dependency)
from test_rl import end_rows_early  # noqa: E402  (pytest puts tests/ on the path)
from transformers import AutoModelForCausalLM  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from infuser.advantages import GroupStdAdvantage, MeanCentredAdvantage  # noqa: E402
from infuser.config import PolicyLossConfig, RoleConfig, SamplingConfig, UpdateConfig
from infuser.model_config import ModelConfig
from infuser.rl.rewards import RewardColumn, RewardStats, combine_rewards  # noqa: E402
from infuser.roles.policy import PolicyRole  # noqa: E402
from infuser.rollout.engine import completion_logps, generate  # noqa: E402
from infuser.rollout.rows import BatchTotals, CompletionStats, RolloutBatch, ScoredRollouts  # noqa: E402

TEMPERATURE = 0.7
MAX_COMPLETION = 12
CAP = 2.0
PROMPTS = ["Question: What is 3 plus 4?\nA) 6\nB) 7\nC) 8\nD) 9\nAnswer:", "Document: 5 times 2 is 10.\n",
           "Question: What is 9 minus 2?\nA) 5\nB) 6\nC) 7\nD) 8\nAnswer:"]
GROUP = 3


@pytest.fixture(scope="module")
def rollouts(tiny_model_dir) -> tuple[RolloutBatch, dict[str, torch.Tensor]]:
    """Sampled completions plus off-policy log-probs that exercise every branch of the loss.

    Old log-probs are the current ones plus noise (ratios on both sides of both clip bounds), the
    sampler's are old plus noise (importance weights above and below the cap), the reference's are
    current plus noise (a non-zero KL); advantages mix signs and include zeros.
    """
    role = PolicyRole(RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir))))
    sampling = SamplingConfig(temperature=TEMPERATURE, max_new_tokens=MAX_COMPLETION)
    batch = generate(role.model, role.tokenizer, PROMPTS, sampling, GROUP, torch.Generator().manual_seed(3))
    assert batch.completion_ids.size(1) == MAX_COMPLETION
    batch = end_rows_early(batch, [3, 12, 7, 12, 5, 9, 12, 2, 10], role.tokenizer.eos_token_id)
    with torch.no_grad():
        current, _ = completion_logps(role.model, batch, TEMPERATURE)
    noise = torch.Generator().manual_seed(4)
    mask = batch.completion_mask.float()
    old = (current + 0.3 * torch.randn(current.shape, generator=noise)) * mask
    batch.sampling_logps = (old + 0.5 * torch.randn(old.shape, generator=noise)) * mask
    ref = (current + 0.2 * torch.randn(current.shape, generator=noise)) * mask
    advantages = torch.tensor([1.0, -0.5, 0.0, 0.7, -1.2, 0.3, -0.8, 0.0, 1.5])
    assert batch.prompt_mask[:, 0].eq(0).any(), "prompts of different lengths: left padding is exercised"
    return batch, {"old": old, "ref": ref, "advantages": advantages}


def _trl_trainer(model_dir, tmp_path, loss_type: str = "dapo", eps_high: float = 0.2, beta: float = 0.0,
                 kl_correction: bool = True, entropy_coef: float = 0.0, **extra) -> GRPOTrainer:
    reward_funcs = extra.pop("reward_funcs", lambda completions, **_: [0.0] * len(completions))
    rollout_func = extra.pop("rollout_func", None)
    args = GRPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", bf16=False,
        per_device_train_batch_size=len(PROMPTS) * GROUP, num_generations=GROUP,
        max_completion_length=MAX_COMPLETION, temperature=TEMPERATURE, loss_type=loss_type,
        epsilon=0.2, epsilon_high=eps_high, beta=beta, use_bias_correction_kl=kl_correction,
        entropy_coef=entropy_coef, **extra,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward_funcs, args=args,
        train_dataset=Dataset.from_dict({"prompt": PROMPTS}), rollout_func=rollout_func,
    )
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@contextmanager
def _frame_locals_of(function):
    """Collect the local variables of ``function``'s frame when it returns (TRL's per-token loss)."""
    captured: dict = {}
    code = function.__code__

    def profiler(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    sys.setprofile(profiler)
    try:
        yield captured
    finally:
        sys.setprofile(None)


def _trl_inputs(batch: RolloutBatch, data: dict[str, torch.Tensor], rows: slice, importance: bool, beta: float,
                mask: torch.Tensor) -> dict:
    inputs = {
        "prompt_ids": batch.prompt_ids[rows], "prompt_mask": batch.prompt_mask[rows],
        "completion_ids": batch.completion_ids[rows], "completion_mask": mask[rows],
        "advantages": data["advantages"][rows], "old_per_token_logps": data["old"][rows],
        "num_items_in_batch": mask[rows].sum(),
    }
    if importance:
        inputs["importance_sampling_ratio"] = torch.exp(data["old"][rows] - batch.sampling_logps[rows]).clamp(max=CAP)
    if beta:
        inputs["ref_per_token_logps"] = data["ref"][rows]
    return inputs


def _trl_loss(trainer: GRPOTrainer, inputs: dict, importance: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's aggregated loss and per-token loss (before masking) for one micro-batch."""
    trainer.use_vllm = trainer.vllm_importance_sampling_correction = importance
    trainer.vllm_importance_sampling_mode = "token_truncate"
    with _frame_locals_of(GRPOTrainer._compute_loss) as frame:
        loss = trainer.compute_loss(trainer.model, inputs)
    return loss, frame["per_token_loss"]


def _infuser_role(model_dir, loss: PolicyLossConfig, micro_batch_size: int = 32) -> PolicyRole:
    return PolicyRole(RoleConfig(
        model=ModelConfig(name_or_path=str(model_dir)),
        sampling=SamplingConfig(temperature=TEMPERATURE, max_new_tokens=MAX_COMPLETION),
        update=UpdateConfig(loss=loss, micro_batch_size=micro_batch_size),
    ))


def _infuser_loss(role: PolicyRole, batch: RolloutBatch, data: dict[str, torch.Tensor], rows: list[int],
                  totals: BatchTotals):
    sub = batch.select(rows)
    width = sub.completion_ids.size(1)
    old, ref = data["old"][rows, :width], data["ref"][rows, :width]
    return role.training_step(ScoredRollouts(sub, data["advantages"][rows]), totals, old, ref)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    assert any(g.abs().max() > 1e-4 for g in ours.values()), "a vanishing gradient would prove nothing"
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-5, msg=name)


def _totals(mask: torch.Tensor) -> BatchTotals:
    return BatchTotals(sequences=mask.size(0), tokens=int(mask.sum()), max_completion_length=MAX_COMPLETION)


KL_SETTINGS = {"no_kl": (0.0, True), "kl": (0.05, True), "kl_uncorrected": (0.05, False)}


@pytest.mark.parametrize("kl", list(KL_SETTINGS))
@pytest.mark.parametrize("eps_high", [0.2, 0.28], ids=["symmetric", "clip_higher"])
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
def test_loss_and_gradients_match_trl(tiny_model_dir, tmp_path, rollouts, loss_type, eps_high, kl):
    batch, data = rollouts
    beta, correction = KL_SETTINGS[kl]
    importance = kl != "kl_uncorrected"  # one setting without the importance weight, on both sides
    trainer = _trl_trainer(tiny_model_dir, tmp_path, loss_type, eps_high, beta, correction)
    role = _infuser_role(tiny_model_dir, PolicyLossConfig(
        loss_type=loss_type, eps_low=0.2, eps_high=eps_high, beta=beta, kl_ratio_correction=correction,
        importance_cap=CAP if importance else None))
    mask = batch.completion_mask
    trl_loss, trl_per_token = _trl_loss(trainer, _trl_inputs(batch, data, slice(None), importance, beta, mask),
                                        importance)
    trl_loss.backward()
    out = _infuser_loss(role, batch, data, list(range(len(batch))), _totals(mask))
    out.loss.loss.backward()

    used = mask.bool()
    torch.testing.assert_close(out.loss.per_token.loss[used], trl_per_token[used].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss.loss.detach(), trl_loss.detach(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(_grads(role.model), _grads(trainer.model))
    clipped = (out.loss.per_token.low_clipped | out.loss.per_token.high_clipped)[used]
    assert clipped.any() and not clipped.all(), "the data must exercise both clipped and unclipped tokens"


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_entropy_bonus_matches_trl(tiny_model_dir, tmp_path, rollouts, loss_type):
    batch, data = rollouts
    trainer = _trl_trainer(tiny_model_dir, tmp_path, loss_type, entropy_coef=0.01)
    role = _infuser_role(tiny_model_dir, PolicyLossConfig(loss_type=loss_type, entropy_coef=0.01, importance_cap=CAP))
    mask = batch.completion_mask
    trl_loss, _ = _trl_loss(trainer, _trl_inputs(batch, data, slice(None), True, 0.0, mask), True)
    trl_loss.backward()
    out = _infuser_loss(role, batch, data, list(range(len(batch))), _totals(mask))
    out.loss.loss.backward()
    torch.testing.assert_close(out.loss.loss.detach(), trl_loss.detach(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(_grads(role.model), _grads(trainer.model))


def test_masked_truncated_completions_match_trl(tiny_model_dir, tmp_path, rollouts):
    """TRL zeroes truncated rows' completion mask; infuser drops them from the loss mask only."""
    batch, data = rollouts
    assert batch.truncated.any() and not batch.truncated.all()
    trainer = _trl_trainer(tiny_model_dir, tmp_path, "grpo")
    role = _infuser_role(tiny_model_dir, PolicyLossConfig(loss_type="grpo", importance_cap=None))
    role.config.update.mask_truncated_completions = True
    mask = batch.completion_mask * (~batch.truncated).unsqueeze(-1).long()
    trl_loss, _ = _trl_loss(trainer, _trl_inputs(batch, data, slice(None), False, 0.0, mask), False)
    trl_loss.backward()
    out = _infuser_loss(role, batch, data, list(range(len(batch))), _totals(mask))
    out.loss.loss.backward()
    torch.testing.assert_close(out.loss.loss.detach(), trl_loss.detach(), atol=1e-6, rtol=1e-5)
    _assert_same_grads(_grads(role.model), _grads(trainer.model))


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_accumulation_is_exact_in_infuser_and_per_micro_batch_in_trl(tiny_model_dir, tmp_path, rollouts, loss_type):
    """Micro-batches of 2 and 7 rows: infuser's accumulated gradient is the full batch's; TRL's is not."""
    batch, data = rollouts
    rows = list(range(len(batch)))
    config = PolicyLossConfig(loss_type=loss_type, importance_cap=None)
    mask = batch.completion_mask
    full = _infuser_role(tiny_model_dir, config)
    _infuser_loss(full, batch, data, rows, _totals(mask)).loss.loss.backward()
    split = _infuser_role(tiny_model_dir, config)
    for part in (rows[:2], rows[2:]):
        _infuser_loss(split, batch, data, part, _totals(mask)).loss.loss.backward()
    _assert_same_grads(_grads(split.model), _grads(full.model))

    trainer = _trl_trainer(tiny_model_dir, tmp_path, loss_type)
    trainer.current_gradient_accumulation_steps = 2
    for part in (slice(0, 2), slice(2, None)):
        loss, _ = _trl_loss(trainer, _trl_inputs(batch, data, part, False, 0.0, mask), False)
        loss.backward()
    theirs, ours = _grads(trainer.model), _grads(full.model)
    assert max(float((theirs[n] - ours[n]).abs().max()) for n in ours) > 1e-4


NAN = float("nan")
CORRECT = [1.0, 0.0, None, 1.0, 1.0, 1.0, 0.0, None, 0.0]  # None: this function does not apply
FORMAT = [1.0, 1.0, None, 0.0, None, 1.0, 1.0, 0.0, 1.0]  # row 2 is scored by neither: missing


@pytest.mark.parametrize(("scale_rewards", "estimator"), [("group", GroupStdAdvantage(eps=1e-4)),
                                                         ("none", MeanCentredAdvantage())])
def test_rewards_advantages_and_metrics_match_trl(tiny_model_dir, tmp_path, rollouts, scale_rewards, estimator):
    """TRL scores our rollouts (handed over through its ``rollout_func``) with two weighted reward
    functions that may return ``None``; infuser's reward helper and advantage estimator give the
    same advantages, and its metrics the same values under the same names."""
    batch, _ = rollouts
    lengths = batch.completion_mask.sum(-1).tolist()

    def rollout_func(prompts, trainer):
        assert prompts == [PROMPTS[i] for i in batch.prompt_index.tolist()]
        prompt_rows = [ids[mask.bool()].tolist() for ids, mask in zip(batch.prompt_ids, batch.prompt_mask)]
        completions = [ids[:n].tolist() for ids, n in zip(batch.completion_ids, lengths)]
        logprobs = [logps[:n].tolist() for logps, n in zip(batch.sampling_logps, lengths)]
        return {"prompt_ids": prompt_rows, "completion_ids": completions, "logprobs": logprobs}

    def correct(completions, **_):
        return CORRECT

    def formatted(completions, **_):
        return FORMAT

    trainer = _trl_trainer(tiny_model_dir, tmp_path, rollout_func=rollout_func, reward_funcs=[correct, formatted],
                           reward_weights=[1.0, 0.5], scale_rewards=scale_rewards)
    trainer.model.train()
    trl = trainer._generate_and_score_completions([{"prompt": PROMPTS[i]} for i in batch.prompt_index.tolist()])

    def column(values):
        return torch.tensor([NAN if v is None else v for v in values])

    combined = combine_rewards([RewardColumn("correct", column(CORRECT), 1.0),
                                RewardColumn("formatted", column(FORMAT), 0.5)])
    advantages = estimator(combined.total, batch.prompt_index)
    torch.testing.assert_close(advantages, trl["advantages"].float(), atol=1e-5, rtol=1e-5)

    logged = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    ours = {**RewardStats.of(combined.total, batch.prompt_index).as_metrics("x"), **combined.metrics("x"),
            **CompletionStats.of(batch).as_metrics("x")}
    for name, value in ours.items():
        assert value == pytest.approx(logged[name.removeprefix("x/")], abs=1e-6), name
