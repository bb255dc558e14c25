"""Optimizer-aware influence against a direct, written-out computation of method.md's formula."""

from __future__ import annotations

import random

import lightning as L
import pytest
import torch

from infuser.data.prompts import PromptTemplates
from infuser.influence.base import ScoredRollouts
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.models import ModelConfig
from infuser.roles.policy import OptimizerConfig, RoleConfig
from infuser.roles.solver import Solver
from infuser.rollout.engine import SamplingConfig
from infuser.toy.world import ToyWorld


@pytest.fixture(scope="module")
def trained_solver(tiny_model_dir):
    """A Solver several AdamW steps in, so the second moment is populated and non-uniform."""
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cpu", devices=1)
    config = RoleConfig(model=ModelConfig(name_or_path=str(tiny_model_dir)),
                        optimizer=OptimizerConfig(lr=1e-3, betas=(0.9, 0.95)),
                        sampling=SamplingConfig(max_new_tokens=8))
    solver = Solver(config, PromptTemplates())
    wrapped, _ = fabric.setup(solver, solver.configure_optimizers())
    wrapped.mark_forward_method("training_step")
    solver.bind(wrapped)
    questions = ToyWorld().question_set("influence-test", 12, seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        answers = solver.answer(questions, 2, generator)
        advantages = torch.randn(len(answers.batch), generator=generator)
        solver.update(answers.batch, advantages)
    return solver, questions


def _rollouts(solver, questions, seed):
    generator = torch.Generator().manual_seed(seed)
    answers = solver.answer(questions, 3, generator)
    advantages = torch.randn(len(answers.batch), generator=generator)
    return ScoredRollouts(answers.batch, advantages)


def _flat_grad(solver, rollouts):
    params = solver.trainable_parameters()
    grads = torch.autograd.grad(solver.surrogate_loss(rollouts), params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]).double()


def _written_out(solver, target, candidate, mode):
    g_t = _flat_grad(solver, target)
    g_q = _flat_grad(solver, candidate)
    optimizer = solver.optimizer_state()
    beta2, eps = optimizer.param_groups[0]["betas"][1], optimizer.param_groups[0]["eps"]
    params = solver.trainable_parameters()
    v = torch.cat([optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in params]).double()
    t = float(optimizer.state[params[0]]["step"]) + 1
    v_next = beta2 * v + (1 - beta2) * g_q**2
    gamma = g_q / (torch.sqrt(v_next / (1 - beta2**t)) + eps)
    left = gamma if mode.startswith("preconditioned") else g_q
    dot = left @ g_t
    if mode.endswith("cosine"):
        dot = dot / (left.norm() * g_t.norm())
    return float(dot)


@pytest.mark.parametrize("mode", ["dot", "cosine", "preconditioned_dot", "preconditioned_cosine"])
def test_matches_written_out_formula(trained_solver, mode):
    solver, questions = trained_solver
    assert float(solver.optimizer_state().state[solver.trainable_parameters()[0]]["step"]) == 3
    target = _rollouts(solver, questions[:6], seed=1)
    candidates = [_rollouts(solver, questions[6 + i : 7 + i], seed=10 + i) for i in range(3)]
    estimator = OptimizerAwareInfluence(mode=mode)
    estimator.prepare(solver, target)
    scores = estimator.score(solver, candidates)
    expected = [_written_out(solver, target, c, mode) for c in candidates]
    assert scores.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_fixed_v_equals_preconditioning_without_candidate_term(trained_solver):
    solver, questions = trained_solver
    target = _rollouts(solver, questions[:6], seed=2)
    candidate = _rollouts(solver, questions[6:7], seed=3)
    estimator = OptimizerAwareInfluence(mode="preconditioned_dot", fixed_v=True)
    estimator.prepare(solver, target)
    score = float(estimator.score(solver, [candidate])[0])
    optimizer = solver.optimizer_state()
    params = solver.trainable_parameters()
    v = torch.cat([optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in params]).double()
    t = float(optimizer.state[params[0]]["step"]) + 1
    beta2, eps = optimizer.param_groups[0]["betas"][1], optimizer.param_groups[0]["eps"]
    gamma = _flat_grad(solver, candidate) / (torch.sqrt(v / (1 - beta2**t)) + eps)
    assert score == pytest.approx(float(gamma @ _flat_grad(solver, target)), rel=1e-6)


def test_score_before_prepare_is_an_error(trained_solver):
    solver, _ = trained_solver
    with pytest.raises(RuntimeError, match="prepare"):
        OptimizerAwareInfluence().score(solver, [])


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        OptimizerAwareInfluence(mode="nope")
