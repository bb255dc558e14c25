"""The built-in influence estimators against direct, written-out computations of their formulas."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.influence.gradients import FlatGradient, target_gradient
from infuser.influence.lora_grad import LoraGradInfluence
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.influence.projection import CountSketch
from infuser.influence.tracin import TracInCheckpoint, TracInInfluence
from infuser.model_config import LoraConfig, ModelConfig
from infuser.rl.update import PolicyUpdate
from infuser.roles.solver import Solver
from infuser.rollout.rows import ScoredRollouts
from infuser.toy.world import ToyWorld

QUESTIONS = ToyWorld().question_set("influence-test", 12, seed=0)


def _solver(model_dir, lora: LoraConfig | None = None) -> Solver:
    """A Solver several AdamW steps in, so both moments are populated and non-uniform."""
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cpu", devices=1)
    config = RoleConfig(model=ModelConfig(name_or_path=str(model_dir), lora=lora),
                        optimizer=OptimizerConfig(lr=1e-3, betas=(0.9, 0.95)),
                        sampling=SamplingConfig(max_new_tokens=8))
    solver = Solver(config, PromptTemplates())
    update = PolicyUpdate.set_up(fabric, solver)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        answers = solver.answer(QUESTIONS, 2, generator)
        update(answers.batch, torch.randn(len(answers.batch), generator=generator))
    return solver


@pytest.fixture(scope="module")
def trained_solver(tiny_model_dir):
    return _solver(tiny_model_dir)


@pytest.fixture(scope="module")
def lora_solver(tiny_model_dir):
    return _solver(tiny_model_dir, LoraConfig(r=2, alpha=4))


def _rollouts(solver, questions, seed):
    generator = torch.Generator().manual_seed(seed)
    answers = solver.answer(questions, 3, generator)
    return ScoredRollouts(answers.batch, torch.randn(len(answers.batch), generator=generator))


@pytest.fixture(scope="module")
def sides(trained_solver):
    """(target, candidates) rollouts of the full Solver."""
    return _rollouts(trained_solver, QUESTIONS[:6], 1), [_rollouts(trained_solver, QUESTIONS[6 + i : 7 + i], 10 + i)
                                                          for i in range(3)]


def _flat_grad(solver, rollouts, parameters=None):
    params = parameters or solver.trainable_parameters()
    grads = torch.autograd.grad(solver.surrogate_loss(rollouts), params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]).double()


def _state(solver, key, params=None):
    optimizer = solver.optimizer_state()
    return torch.cat([optimizer.state[p][key].reshape(-1) for p in params or solver.trainable_parameters()]).double()


def _adam_settings(solver):
    optimizer = solver.optimizer_state()
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    t = float(optimizer.state[solver.trainable_parameters()[0]]["step"]) + 1
    return beta1, beta2, optimizer.param_groups[0]["eps"], t


def _cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# -- optimizer_aware -------------------------------------------------------------------------------


def _written_out(solver, target, candidate, mode):
    g_t, g_q = _flat_grad(solver, target), _flat_grad(solver, candidate)
    _, beta2, eps, t = _adam_settings(solver)
    v_next = beta2 * _state(solver, "exp_avg_sq") + (1 - beta2) * g_q**2
    gamma = g_q / (torch.sqrt(v_next / (1 - beta2**t)) + eps)
    left = gamma if mode.startswith("preconditioned") else g_q
    return _cosine(left, g_t) if mode.endswith("cosine") else float(left @ g_t)


@pytest.mark.parametrize("mode", ["dot", "cosine", "preconditioned_dot", "preconditioned_cosine"])
def test_optimizer_aware_matches_written_out_formula(trained_solver, sides, mode):
    target, candidates = sides
    assert float(trained_solver.optimizer_state().state[trained_solver.trainable_parameters()[0]]["step"]) == 3
    estimator = OptimizerAwareInfluence(mode=mode)
    estimator.prepare(trained_solver, target)
    scores = estimator.score(trained_solver, candidates)
    expected = [_written_out(trained_solver, target, c, mode) for c in candidates]
    assert scores.dtype == torch.float64 and scores.shape == (3,)
    assert scores.tolist() == pytest.approx(expected, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("mode", ["preconditioned_dot", "preconditioned_cosine"])
def test_fixed_v_equals_preconditioning_without_candidate_term(trained_solver, sides, mode):
    """With v fixed the preconditioner moves to the target side; the score must not change."""
    target, candidates = sides
    estimator = OptimizerAwareInfluence(mode=mode, fixed_v=True)
    estimator.prepare(trained_solver, target)
    scores = estimator.score(trained_solver, candidates)
    _, beta2, eps, t = _adam_settings(trained_solver)
    denominator = torch.sqrt(_state(trained_solver, "exp_avg_sq") / (1 - beta2**t)) + eps
    g_t = _flat_grad(trained_solver, target)
    for score, candidate in zip(scores.tolist(), candidates):
        gamma = _flat_grad(trained_solver, candidate) / denominator
        expected = _cosine(gamma, g_t) if mode.endswith("cosine") else float(gamma @ g_t)
        assert score == pytest.approx(expected, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("mode", ["preconditioned_dot", "preconditioned_cosine"])
def test_adam_update_is_the_candidates_share_of_the_whole_adamw_update(trained_solver, sides, mode):
    """``U(g_q) - U(0)`` with ``U(g) = m'_hat / (sqrt(v'_hat) + eps)``, written out."""
    target, candidates = sides
    estimator = OptimizerAwareInfluence(mode=mode, preconditioner="adam_update")
    estimator.prepare(trained_solver, target)
    scores = estimator.score(trained_solver, candidates)
    beta1, beta2, eps, t = _adam_settings(trained_solver)
    m, v = _state(trained_solver, "exp_avg"), _state(trained_solver, "exp_avg_sq")

    def update(g):
        return ((beta1 * m + (1 - beta1) * g) / (1 - beta1**t)) / (torch.sqrt((beta2 * v + (1 - beta2) * g**2)
                                                                             / (1 - beta2**t)) + eps)

    g_t = _flat_grad(trained_solver, target)
    for score, candidate in zip(scores.tolist(), candidates):
        g_q = _flat_grad(trained_solver, candidate)
        share = update(g_q) - update(torch.zeros_like(g_q))
        expected = _cosine(share, g_t) if mode.endswith("cosine") else float(share @ g_t)
        # float32 buffers against float64: U(g_q) - U(0) cancels the momentum part, so compare
        # with a tolerance relative to the magnitude of the terms that cancel
        scale = float(update(g_q).abs() @ g_t.abs())
        if mode.endswith("cosine"):
            scale /= float(share.norm() * g_t.norm())
        assert score == pytest.approx(expected, abs=1e-5 * scale)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        OptimizerAwareInfluence(mode="nope")
    with pytest.raises(ValueError, match="preconditioner"):
        OptimizerAwareInfluence(preconditioner="nope")
    with pytest.raises(ValueError, match="preconditioner"):
        OptimizerAwareInfluence(preconditioner="adam_update", fixed_v=True)
    with pytest.raises(ValueError, match="preconditioner"):
        OptimizerAwareInfluence(mode="dot", preconditioner="adam_update")


# -- tracin ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cosine", [False, True])
def test_tracin_is_the_lr_scaled_gradient_product(trained_solver, sides, cosine):
    target, candidates = sides
    estimator = TracInInfluence(cosine=cosine)
    estimator.prepare(trained_solver, target)
    scores = estimator.score(trained_solver, candidates)
    g_t = _flat_grad(trained_solver, target)
    for score, candidate in zip(scores.tolist(), candidates):
        g_q = _flat_grad(trained_solver, candidate)
        assert score == pytest.approx(1e-3 * (_cosine(g_q, g_t) if cosine else float(g_q @ g_t)), rel=1e-4, abs=1e-12)


def _perturbed(solver):
    """Values of the trainable parameters of a different point of the run, by name."""
    generator = torch.Generator().manual_seed(7)
    names = {id(p): n for n, p in solver.named_parameters()}
    return {names[id(p)]: p.detach() + 0.01 * torch.randn(p.shape, generator=generator)
            for p in solver.trainable_parameters()}


def _grad_at(solver, values, rollouts):
    params = solver.trainable_parameters()
    live = [p.detach().clone() for p in params]
    names = {id(p): n for n, p in solver.named_parameters()}
    with torch.no_grad():
        for p in params:
            p.copy_(values[names[id(p)]])
    try:
        return _flat_grad(solver, rollouts)
    finally:
        with torch.no_grad():
            for p, value in zip(params, live):
                p.copy_(value)


def test_tracin_sums_checkpoints_with_their_learning_rates(trained_solver, sides, tmp_path):
    target, candidates = sides
    values = _perturbed(trained_solver)
    # A Fabric-style checkpoint (entry "solver", names of the Solver) and a safetensors file
    # with the language model's own names (no "model." prefix) hold the same point.
    torch.save({"solver": values}, tmp_path / "fit.ckpt")
    save_file({k.removeprefix("model."): v.contiguous() for k, v in values.items()}, tmp_path / "lm.safetensors")
    live_before = [p.detach().clone() for p in trained_solver.trainable_parameters()]
    estimator = TracInInfluence(checkpoints=[TracInCheckpoint(str(tmp_path / "fit.ckpt"), lr=0.5),
                                             TracInCheckpoint(str(tmp_path / "lm.safetensors"), lr=0.25)])
    estimator.prepare(trained_solver, target)
    scores = estimator.score(trained_solver, candidates)
    for p, before in zip(trained_solver.trainable_parameters(), live_before):
        assert torch.equal(p, before)  # the live weights are back after every swap
    g_t, g_t_ckpt = _flat_grad(trained_solver, target), _grad_at(trained_solver, values, target)
    for score, candidate in zip(scores.tolist(), candidates):
        live = 1e-3 * float(_flat_grad(trained_solver, candidate) @ g_t)
        saved = 0.75 * float(_grad_at(trained_solver, values, candidate) @ g_t_ckpt)
        assert score == pytest.approx(live + saved, rel=1e-4, abs=1e-12)


def test_tracin_checkpoint_errors_name_the_key(trained_solver, sides, tmp_path):
    target, _ = sides
    torch.save({"solver": {"model.nothing": torch.zeros(1)}}, tmp_path / "wrong.ckpt")
    with pytest.raises(KeyError, match=r"tracin.checkpoints\[0\].*no entry for parameter"):
        TracInInfluence(checkpoints=[TracInCheckpoint(str(tmp_path / "wrong.ckpt"), lr=1.0)]).prepare(trained_solver, target)
    # Pickled Python objects beyond tensors (here a NumPy RNG state) need an explicit opt-in.
    values = _perturbed(trained_solver)
    torch.save({"solver": values, "rng": np.random.get_state()}, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match=r"tracin.checkpoints\[0\].trusted"):
        TracInInfluence(checkpoints=[TracInCheckpoint(str(tmp_path / "pickled.ckpt"), lr=1.0)]).prepare(trained_solver, target)
    TracInInfluence(checkpoints=[TracInCheckpoint(str(tmp_path / "pickled.ckpt"), lr=1.0, trusted=True)],
                    live=False).prepare(trained_solver, target)
    with pytest.raises(ValueError, match="live=false"):
        TracInInfluence(live=False)


# -- lora_grad -------------------------------------------------------------------------------------


def test_lora_grad_without_adapter_says_so(trained_solver, sides):
    with pytest.raises(ValueError, match=r"no LoRA adapter.*solver\.model\.lora"):
        LoraGradInfluence().prepare(trained_solver, sides[0])


def _lora_parameters(solver):
    return [p for n, p in solver.named_parameters() if p.requires_grad and ".lora_" in n]


@pytest.mark.parametrize("adam", [False, True])
def test_lora_grad_matches_written_out_formula(lora_solver, adam):
    target = _rollouts(lora_solver, QUESTIONS[:6], 1)
    candidates = [_rollouts(lora_solver, QUESTIONS[6 + i : 7 + i], 10 + i) for i in range(3)]
    params = _lora_parameters(lora_solver)
    assert params and sum(p.numel() for p in params) < sum(p.numel() for p in lora_solver.model.parameters()) / 5
    estimator = LoraGradInfluence(adam=adam, projection_dim=None, cosine=False)
    estimator.prepare(lora_solver, target)
    scores = estimator.score(lora_solver, candidates)
    g_t = _flat_grad(lora_solver, target, params)
    beta1, beta2, eps, t = _adam_settings(lora_solver)
    m, v = _state(lora_solver, "exp_avg", params), _state(lora_solver, "exp_avg_sq", params)
    for score, candidate in zip(scores.tolist(), candidates):
        g_q = _flat_grad(lora_solver, candidate, params)
        feature = g_q
        if adam:
            m_hat = (beta1 * m + (1 - beta1) * g_q) / (1 - beta1**t)
            v_hat = (beta2 * v + (1 - beta2) * g_q**2) / (1 - beta2**t)
            feature = m_hat / (v_hat.sqrt() + eps)
        assert score == pytest.approx(float(feature @ g_t), rel=1e-4, abs=1e-12)


def test_lora_grad_projects_both_sides_with_the_seeded_sketch(lora_solver):
    target = _rollouts(lora_solver, QUESTIONS[:6], 1)
    candidates = [_rollouts(lora_solver, QUESTIONS[6 + i : 7 + i], 10 + i) for i in range(2)]
    params = _lora_parameters(lora_solver)
    estimator = LoraGradInfluence(adam=False, projection_dim=64, seed=3)
    estimator.prepare(lora_solver, target)
    scores = estimator.score(lora_solver, candidates)
    sketch = CountSketch(sum(p.numel() for p in params), 64, seed=3)
    z_t = sketch(_flat_grad(lora_solver, target, params))
    for score, candidate in zip(scores.tolist(), candidates):
        assert score == pytest.approx(_cosine(sketch(_flat_grad(lora_solver, candidate, params)), z_t), rel=1e-4, abs=1e-6)


def test_count_sketch_is_seeded_and_preserves_inner_products_on_average():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, generator=generator), torch.randn(500, generator=generator)
    y = y + x  # correlated, so the inner product is far from 0
    assert torch.equal(CountSketch(500, 32, seed=1)(x), CountSketch(500, 32, seed=1)(x))
    assert not torch.equal(CountSketch(500, 32, seed=1)(x), CountSketch(500, 32, seed=2)(x))
    estimates = torch.tensor([float(CountSketch(500, 32, seed=s)(x) @ CountSketch(500, 32, seed=s)(y)) for s in range(300)])
    spread = float(x.norm() * y.norm()) / 32**0.5 / 300**0.5  # standard error of the mean
    assert abs(float(estimates.mean()) - float(x @ y)) < 4 * spread


# -- the contract every estimator keeps ------------------------------------------------------------


@pytest.mark.parametrize(("make", "lora"), [(OptimizerAwareInfluence, False), (TracInInfluence, False),
                                            (lambda: LoraGradInfluence(projection_dim=16), True)],
                         ids=["optimizer_aware", "tracin", "lora_grad"])
def test_scoring_leaves_the_solver_untouched(make, lora, trained_solver, lora_solver):
    solver = lora_solver if lora else trained_solver
    target = _rollouts(solver, QUESTIONS[:4], 1)
    candidates = [_rollouts(solver, QUESTIONS[4 + i : 5 + i], 10 + i) for i in range(2)]
    params = solver.trainable_parameters()
    marker = torch.ones_like(params[0])
    params[0].grad = marker.clone()  # a pending gradient must survive scoring
    weights = [p.detach().clone() for p in params]
    state = {k: v.clone() for k, v in solver.optimizer_state().state[params[0]].items()}
    estimator = make()
    with pytest.raises(RuntimeError, match="before prepare"):
        estimator.score(solver, candidates)
    estimator.prepare(solver, target)
    first = estimator.score(solver, candidates)
    assert torch.equal(estimator.score(solver, candidates), first)  # prepared once, scored repeatedly
    assert torch.equal(params[0].grad, marker) and all(p.grad is None for p in params[1:])
    assert all(torch.equal(p, w) for p, w in zip(params, weights))
    assert all(torch.equal(v, state[k]) for k, v in solver.optimizer_state().state[params[0]].items())
    params[0].grad = None


# -- micro-batched gradients: memory bounded by update.micro_batch_size, values unchanged ----------------


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
def test_micro_batch_losses_add_up_to_the_whole(trained_solver, sides, monkeypatch, loss_type):
    """Every piece is normalised by the whole's totals, so the pieces' losses (and gradients) sum to
    the whole's, whatever the aggregation; rows with a zero advantage are left out."""
    target, _ = sides
    rollouts = ScoredRollouts(target.batch, target.advantages.clone())
    rollouts.advantages[[0, 5]] = 0.0
    monkeypatch.setattr(trained_solver.config.update.loss, "loss_type", loss_type)
    monkeypatch.setattr(trained_solver.config.update, "micro_batch_size", 4)
    pieces = trained_solver.micro_batches(rollouts)
    assert [len(piece.batch) for piece in pieces] == [4, 4, 4, 4]  # 18 rows, 2 without advantage
    with torch.no_grad():
        whole = float(trained_solver.surrogate_loss(rollouts))
        assert sum(float(trained_solver.surrogate_loss(piece)) for piece in pieces) == pytest.approx(whole, rel=1e-5)
    flat = FlatGradient(trained_solver.trainable_parameters())
    torch.testing.assert_close(target_gradient(flat, trained_solver, rollouts).double(),
                               _flat_grad(trained_solver, rollouts), rtol=1e-4, atol=1e-7)


def test_rows_without_a_contribution_give_no_micro_batch_and_a_zero_gradient(trained_solver, sides):
    """A process's empty share of the target set, or rows whose advantages are all 0, forward nothing."""
    target, _ = sides
    flat = FlatGradient(trained_solver.trainable_parameters())
    for rollouts in (ScoredRollouts(target.batch.select([]), target.advantages[:0]),
                     ScoredRollouts(target.batch, torch.zeros_like(target.advantages))):
        assert trained_solver.micro_batches(rollouts) == []
        assert not target_gradient(flat, trained_solver, rollouts).any()


@pytest.mark.parametrize(("make", "lora"), [(OptimizerAwareInfluence, False),
                                            (lambda: OptimizerAwareInfluence(fixed_v=True), False),
                                            (lambda: TracInInfluence(cosine=True), False),
                                            (LoraGradInfluence, True)],
                         ids=["optimizer_aware", "fixed_v", "tracin", "lora_grad"])
def test_scores_do_not_depend_on_the_micro_batch_size(make, lora, trained_solver, lora_solver, monkeypatch):
    """The target set and every candidate are forwarded at most ``micro_batch_size`` rows at a time,
    and the scores are those of whole-batch passes."""
    solver = lora_solver if lora else trained_solver
    target = _rollouts(solver, QUESTIONS[:6], 1)
    candidates = [_rollouts(solver, QUESTIONS[6 + i : 8 + i], 10 + i) for i in range(3)]  # 6 rows each

    def scores(micro_batch_size: int) -> tuple[list[float], int]:
        monkeypatch.setattr(solver.config.update, "micro_batch_size", micro_batch_size)
        widest = []
        hook = solver.model.register_forward_pre_hook(
            lambda module, args, kwargs: widest.append(kwargs["input_ids"].size(0)), with_kwargs=True)
        try:
            estimator = make()
            estimator.prepare(solver, target)
            return estimator.score(solver, candidates).tolist(), max(widest)
        finally:
            hook.remove()

    whole, whole_rows = scores(64)
    pieces, piece_rows = scores(2)
    assert whole_rows == 18 and piece_rows <= 2
    assert pieces == pytest.approx(whole, rel=1e-4, abs=1e-7)


# -- chunked reductions and buffer lifetime --------------------------------------------------------------


@pytest.mark.parametrize(("make", "lora"), [(lambda: OptimizerAwareInfluence(mode="dot"), False),
                                            (OptimizerAwareInfluence, False),
                                            (lambda: OptimizerAwareInfluence(fixed_v=True), False),
                                            (lambda: TracInInfluence(cosine=True), False),
                                            (lambda: LoraGradInfluence(projection_dim=None), True),
                                            (lambda: LoraGradInfluence(projection_dim=16), True)],
                         ids=["dot", "preconditioned_cosine", "fixed_v", "tracin", "lora_grad", "lora_grad_sketch"])
def test_scores_do_not_depend_on_the_chunk_size(make, lora, trained_solver, lora_solver, monkeypatch):
    """Reductions run chunk by chunk; chunks of 7 coordinates (every parameter split, at odd
    places) give the scores of whole-parameter chunks up to float32 summation order: each sum
    of n float32 terms moves by about n * 6e-8 of its largest partial sum, n < 1e5 here."""
    from infuser.influence import gradients

    solver = lora_solver if lora else trained_solver
    target = _rollouts(solver, QUESTIONS[:6], 1)
    candidates = [_rollouts(solver, QUESTIONS[6 + i : 7 + i], 10 + i) for i in range(3)]

    def scores(chunk: int) -> list[float]:
        monkeypatch.setitem(gradients.CHUNK_ELEMENTS, "cpu", chunk)
        estimator = make()
        estimator.prepare(solver, target)
        return estimator.score(solver, candidates).tolist()

    assert scores(7) == pytest.approx(scores(1 << 30), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("make", [OptimizerAwareInfluence, lambda: OptimizerAwareInfluence(fixed_v=True),
                                  TracInInfluence], ids=["optimizer_aware", "fixed_v", "tracin"])
def test_release_drops_the_prepared_vectors_and_prepare_starts_from_nothing(make, trained_solver, sides):
    """What ``prepare`` keeps is gone after ``release`` (the loop calls it after the last scoring
    of an iteration), and a second ``prepare`` frees the first one's vectors before allocating."""
    import gc
    import weakref

    target, candidates = sides
    estimator = make()
    estimator.prepare(trained_solver, target)
    first = estimator.score(trained_solver, candidates)
    kept = [weakref.ref(t) for t in vars(estimator).values() if isinstance(t, torch.Tensor) and t.numel() > 1000]
    kept += [weakref.ref(point.target) for point in getattr(estimator, "_points", [])]
    assert kept
    seen = []
    original = torch.zeros

    def spy(*args, **kwargs):  # the first model-sized allocation of the second prepare
        if not seen:
            seen.append([ref() is None for ref in kept])
        return original(*args, **kwargs)

    gc.collect()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "zeros", spy)
        estimator.prepare(trained_solver, target)
    assert seen and all(seen[0])
    assert torch.equal(estimator.score(trained_solver, candidates), first)
    estimator.release()
    with pytest.raises(RuntimeError, match="before prepare"):
        estimator.score(trained_solver, candidates)
