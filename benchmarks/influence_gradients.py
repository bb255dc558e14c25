"""How to get per-candidate gradients for influence: five ways, timed on a Solver.

Every option computes the same thing as ``optimizer_aware`` (``preconditioned_cosine``): for each
candidate, ``Gamma_q = g_q / (sqrt(v'_hat) + eps)``, then ``<Gamma_q, g_T>`` and ``|Gamma_q|``,
reduced on the fly (no N x P matrix). Timed per candidate, the median of ``--repeats`` rounds; each
round runs every option once, interleaved, so all options see the same machine load (other jobs
on a shared machine). ``vs floor`` is the median over rounds of the per-round ratio:

* ``floor``: one plain forward+backward per candidate, nothing else (what any exact method pays);
* ``flat buffer``: what infuser ships (:class:`infuser.influence.gradients.FlatGradient`): one
  forward+backward per candidate, ``.grad`` views into one flat buffer, float32 in-place vector work;
* ``per-parameter + foreach``: one forward+backward per candidate via ``torch.autograd.grad``,
  reductions with ``torch._foreach_*`` over the parameter list (no flat buffer);
* ``batched, linear hooks``: one forward and one activation-only backward for ``--batch``
  candidates; hooks on every ``nn.Linear`` form each candidate's weight gradient from saved inputs
  and output gradients (one ``bmm`` per layer) and reduce it at once. Embeddings and norms are
  *not* covered, so this is a lower bound on its cost; and every row runs in full (with shared
  prompt passes a layer's input rows no longer belong to one candidate each);
* ``batched, is_grads_batched``: one forward for ``--batch`` candidates, then a vmapped backward of
  their loss vector (``torch.autograd.grad(..., is_grads_batched=True)``);
* ``batched, torch.func``: ``vmap(grad(functional_call(...)))`` over candidates.

    python -m benchmarks.influence_gradients --model builtin:toy --json influence_gradients.json
    python -m benchmarks.influence_gradients --model /tmp/shapes/m40 --options floor shipped --repeats 9

Any model works, random weights included (``benchmarks/model_shapes.py`` builds them): the Solver's
AdamW state comes from ``--warmup-steps`` real updates with random advantages, and the target's
and the candidates' advantages are random too, so every row carries gradient whatever the model
answers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from infuser.config import OptimizerConfig, RoleConfig, SamplingConfig
from infuser.data.prompts import PromptTemplates
from infuser.influence.gradients import AdamStep, FlatGradient, target_gradient
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.model_config import ModelConfig
from infuser.rl.update import PolicyUpdate
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps
from infuser.rollout.rows import Answers, RolloutBatch, ScoredRollouts
from infuser.toy.world import ToyWorld


def trained_solver(model: str, warmup_steps: int, answers: int, max_new_tokens: int) -> Solver:
    """A Solver a few real RL updates in (populated AdamW moments), with random advantages."""
    torch.manual_seed(0)
    fabric = L.Fabric(accelerator="cpu", devices=1)
    solver = Solver(RoleConfig(model=ModelConfig(name_or_path=model), optimizer=OptimizerConfig(lr=5e-4),
                               sampling=SamplingConfig(max_new_tokens=max_new_tokens)), PromptTemplates())
    update = PolicyUpdate.set_up(fabric, solver)
    sampler = torch.Generator().manual_seed(0)
    for step in range(warmup_steps):
        drawn = solver.answer(ToyWorld().question_set(f"warmup-{step}", 16, 0), answers, sampler)
        update(drawn.batch, torch.randn(len(drawn.batch), generator=sampler))
    return solver


def per_candidate_losses(solver: Solver, batch: RolloutBatch, advantages: Tensor, candidates: int,
                         share_prompts: bool = True) -> Tensor:
    """Each candidate's on-policy token-mean loss, from one forward over all their rows."""
    logps, _ = completion_logps(solver.model, batch, solver.config.sampling.temperature, share_prompts=share_prompts)
    mask = batch.completion_mask.to(logps.dtype)
    per_token = -torch.exp(logps - logps.detach()) * advantages.unsqueeze(-1) * mask
    return per_token.view(candidates, -1).sum(-1) / mask.view(candidates, -1).sum(-1).clamp_min(1)


class Options:
    """The options, sharing the Solver, the candidates and the prepared target side."""

    def __init__(self, solver: Solver, answers: Answers, advantages: Tensor, target: ScoredRollouts,
                 batch: int) -> None:
        self.solver, self.answers, self.advantages, self.batch = solver, answers, advantages, batch
        n = len(answers.batch) // len(answers.questions)
        self.rows = [answers.rows_of(q) for q in range(len(answers.questions))]
        self.candidates = [ScoredRollouts(answers.batch.select(r), advantages[r]) for r in self.rows]
        self.params = solver.trainable_parameters()
        self.flat = FlatGradient(self.params)
        self.adam = AdamStep(solver.optimizer_state(), self.flat, "benchmark")
        self.target = target_gradient(self.flat, solver, target)
        self.estimator = OptimizerAwareInfluence()
        self.estimator.prepare(solver, target)
        # Per-parameter views of the target side, for the options that work parameter by parameter:
        # v'_hat = v_term + g2_weight * g**2, as in AdamStep.
        correction = 1.0 - self.adam.beta2**self.adam.next_step
        self.g2_weight = (1.0 - self.adam.beta2) / correction
        v_term = self.flat.flatten_state(solver.optimizer_state(), "exp_avg_sq") * (self.adam.beta2 / correction)
        splits = [p.numel() for p in self.params]
        self.target_parts = [t.view_as(p) for t, p in zip(self.target.split(splits), self.params)]
        self.v_parts = [v.view_as(p) for v, p in zip(v_term.split(splits), self.params)]
        self.by_param = {id(p): i for i, p in enumerate(self.params)}
        self.n = n

    def _gamma(self, gradient: Tensor, index: int) -> Tensor:
        """Gamma of one parameter's (possibly batched) gradient."""
        denominator = torch.addcmul(self.v_parts[index], gradient, gradient, value=self.g2_weight).sqrt_().add_(self.adam.eps)
        return gradient / denominator

    def floor(self) -> None:
        for candidate in self.candidates:
            self.solver.surrogate_loss(candidate).backward(inputs=self.params)
            for p in self.params:
                p.grad = None

    def flat_buffer(self) -> None:
        self.estimator.score(self.solver, self.candidates)

    def per_parameter_foreach(self) -> None:
        for candidate in self.candidates:
            grads = torch.autograd.grad(self.solver.surrogate_loss(candidate), self.params)
            squares = torch._foreach_mul(grads, grads)
            torch._foreach_mul_(squares, self.g2_weight)
            torch._foreach_add_(squares, self.v_parts)
            torch._foreach_sqrt_(squares)
            torch._foreach_add_(squares, self.adam.eps)
            gammas = torch._foreach_div(grads, squares)
            dot = sum(float((g * t).sum()) for g, t in zip(gammas, self.target_parts))
            norm = math.sqrt(sum(float(n) ** 2 for n in torch._foreach_norm(gammas)))
            _ = dot / norm

    def _chunks(self) -> list[list[int]]:
        return [list(range(i, min(i + self.batch, len(self.rows)))) for i in range(0, len(self.rows), self.batch)]

    def _merged(self, chunk: list[int]) -> tuple[RolloutBatch, Tensor]:
        rows = [r for q in chunk for r in self.rows[q]]
        return self.answers.batch.select(rows), self.advantages[rows]

    def linear_hooks(self) -> None:
        linears = [m for m in self.solver.model.modules() if isinstance(m, nn.Linear) and id(m.weight) in self.by_param]
        embedding = self.solver.model.get_input_embeddings()
        for chunk in self._chunks():
            candidates = len(chunk)
            dots, squares = torch.zeros(candidates), torch.zeros(candidates)
            inputs: dict[nn.Module, Tensor] = {}
            embedded: list[Tensor] = []

            def keep_input(module, args, output):
                inputs[module] = args[0].detach()

            def reduce(module, grad_input, grad_output):
                a = inputs.pop(module).reshape(candidates, -1, module.in_features)
                g = grad_output[0].reshape(candidates, -1, module.out_features)
                per_candidate = torch.bmm(g.transpose(1, 2), a)  # candidates x out x in
                gamma = self._gamma(per_candidate, self.by_param[id(module.weight)])
                dots.add_((gamma * self.target_parts[self.by_param[id(module.weight)]]).sum((1, 2)))
                squares.add_(gamma.square().sum((1, 2)))

            handles = [m.register_forward_hook(keep_input) for m in linears]
            handles += [m.register_full_backward_hook(reduce) for m in linears]
            handles.append(embedding.register_forward_hook(lambda m, a, out: embedded.append(out)))
            try:
                batch, advantages = self._merged(chunk)
                # Every row in full: with shared prompts a prompt's activations serve several rows.
                losses = per_candidate_losses(self.solver, batch, advantages, candidates, share_prompts=False)
                torch.autograd.grad(losses.sum(), embedded[0])  # activations only; the hooks do the weights
            finally:
                for handle in handles:
                    handle.remove()
            _ = dots / squares.sqrt()

    def is_grads_batched(self) -> None:
        for chunk in self._chunks():
            batch, advantages = self._merged(chunk)
            losses = per_candidate_losses(self.solver, batch, advantages, len(chunk))
            grads = torch.autograd.grad(losses, self.params, grad_outputs=torch.eye(len(chunk)), is_grads_batched=True)
            dots, squares = torch.zeros(len(chunk)), torch.zeros(len(chunk))
            for index, gradient in enumerate(grads):
                gamma = self._gamma(gradient, index)
                dots += (gamma * self.target_parts[index]).flatten(1).sum(1)
                squares += gamma.square().flatten(1).sum(1)
            _ = dots / squares.sqrt()

    def torch_func(self) -> None:
        from torch.func import functional_call, grad, vmap

        named = {n: p for n, p in self.solver.model.named_parameters() if id(p) in self.by_param}
        values = {n: p.detach() for n, p in named.items()}
        temperature = self.solver.config.sampling.temperature

        def loss(params, prompt_ids, prompt_mask, completion_ids, completion_mask, advantages):
            ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention = torch.cat([prompt_mask, completion_mask], dim=1)
            positions = (attention.cumsum(-1) - 1).clamp_min(0)
            logits = functional_call(self.solver.model, params, (ids,),
                                     {"attention_mask": attention, "position_ids": positions}).logits
            logits = logits[:, prompt_ids.size(1) - 1 : -1].float() / temperature
            logps = logits.log_softmax(-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
            mask = completion_mask.to(logps.dtype)
            return (-torch.exp(logps - logps.detach()) * advantages.unsqueeze(-1) * mask).sum() / mask.sum()

        for chunk in self._chunks():
            batch, advantages = self._merged(chunk)
            shaped = [t.view(len(chunk), self.n, -1) for t in (batch.prompt_ids, batch.prompt_mask,
                                                                 batch.completion_ids, batch.completion_mask)]
            grads = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0, 0))(values, *shaped, advantages.view(len(chunk), -1))
            dots, squares = torch.zeros(len(chunk)), torch.zeros(len(chunk))
            for name, parameter in named.items():
                index = self.by_param[id(parameter)]
                gamma = self._gamma(grads[name], index)
                dots += (gamma * self.target_parts[index]).flatten(1).sum(1)
                squares += gamma.square().flatten(1).sum(1)
            _ = dots / squares.sqrt()


OPTIONS = {"floor": "floor (plain forward+backward)", "shipped": "flat buffer (shipped)",
           "foreach": "per-parameter + foreach", "hooks": "batched, linear hooks",
           "is_grads_batched": "batched, is_grads_batched", "torch_func": "batched, torch.func"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:toy")
    parser.add_argument("--candidates", type=int, default=32, help="questions drawn (all are scored)")
    parser.add_argument("--answers", type=int, default=8, help="answers per question")
    parser.add_argument("--max_new_tokens", type=int, default=20, help="completion budget of the Solver's answers")
    parser.add_argument("--batch", type=int, default=8, help="candidates per batched pass")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS),
                        help="which options to time (floor is always timed)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    solver = trained_solver(args.model, args.warmup_steps, args.answers, args.max_new_tokens)
    sampler = torch.Generator().manual_seed(1)
    target_answers = solver.answer(ToyWorld().question_set("target", 16, 0), args.answers, sampler)
    target = ScoredRollouts(target_answers.batch, torch.randn(len(target_answers.batch), generator=sampler))
    answers = solver.answer(ToyWorld().question_set("candidates", args.candidates, 0), args.answers, sampler)
    advantages = torch.randn(len(answers.batch), generator=sampler)  # every question carries signal
    options = Options(solver, answers, advantages, target, args.batch)
    methods: dict[str, Callable[[], None]] = {
        "floor": options.floor, "shipped": options.flat_buffer, "foreach": options.per_parameter_foreach,
        "hooks": options.linear_hooks, "is_grads_batched": options.is_grads_batched, "torch_func": options.torch_func,
    }
    runs = {OPTIONS[key]: methods[key] for key in dict.fromkeys(["floor", *args.options])}
    floor_name = OPTIONS["floor"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    failed: dict[str, str] = {}
    for round_ in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, run in runs.items():
            if name in failed:
                continue
            started = time.perf_counter()
            try:
                run()
            except Exception as error:  # noqa: BLE001 - an option that cannot run is a result too
                failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                continue
            if round_:
                times[name].append(time.perf_counter() - started)
    floor = statistics.median(times[floor_name]) / args.candidates
    parameters = sum(p.numel() for p in options.params)
    print(f"{parameters:,} parameters, {args.candidates} candidates x {args.answers} answers, batch {args.batch}, "
          f"median of {args.repeats} interleaved rounds, {torch.get_num_threads()} thread(s)")
    print(f"{'option':<34}{'ms/candidate':>14}{'vs floor':>10}")
    rows = []
    for name in runs:
        if name in failed:
            print(f"{name:<34}{'failed':>14}  {failed[name]}")
            rows.append({"option": name, "failed": failed[name]})
            continue
        per_candidate = statistics.median(times[name]) / args.candidates
        ratio = statistics.median(t / f for t, f in zip(times[name], times[floor_name]))
        print(f"{name:<34}{per_candidate * 1e3:>14.1f}{ratio:>10.3f}")
        rows.append({"option": name, "seconds_per_candidate": per_candidate, "vs_floor": ratio,
                     "round_ratios": [t / f for t, f in zip(times[name], times[floor_name])]})
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "parameters": parameters, "candidates": args.candidates,
                                         "answers": args.answers, "max_new_tokens": args.max_new_tokens,
                                         "threads": torch.get_num_threads(), "repeats": args.repeats,
                                         "floor_seconds_per_candidate": floor, "options": rows}, indent=2))


if __name__ == "__main__":
    main()
