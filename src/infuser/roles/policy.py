"""What the Generator and the Solver have in common: a causal LM policy trained by clipped policy gradient.

:class:`PolicyRole` is the module half of Lightning Fabric's pattern: a LightningModule with manual
optimisation that gives ``training_step`` (the loss of one micro-batch), ``logps_step`` (log-probs
without gradient) and ``configure_optimizers``, and samples rollouts. The trainer half, the update
with its mini-batches, gradient synchronisation, clipping and optimizer steps, is
:class:`~infuser.rl.update.PolicyUpdate`, which also hands the role to Fabric's strategy. Influence
estimators differentiate the role through :meth:`surrogate_loss` and :meth:`micro_batches`.

A role either owns its model or trains its LoRA adapter on a :class:`~infuser.models.SharedBase`
it shares with the other role; the code path is the same, with the role's adapter activated
(:meth:`PolicyRole.activate`) before each use of the model.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from infuser.config import RoleConfig, SamplingConfig
from infuser.data.chat import ChatFormat
from infuser.distributed import Processes
from infuser.models import SharedBase, load_causal_lm, load_tokenizer
from infuser.rl.loss import carrying_gradient, policy_loss
from infuser.rl.update import MicroBatchOutput
from infuser.rollout.engine import Lockstep, call_seed, completion_logps, generate
from infuser.rollout.rows import BatchTotals, RolloutBatch, ScoredRollouts, SplitRollouts
from infuser.rollout.scoring import teacher_forced_batch
from infuser.sharding import gathered, whole_weights


@dataclass(frozen=True)
class FrozenReference:
    """The KL reference policy when it is a copy of the base (a full-weight role with ``beta`` > 0).

    Held in this wrapper, not as a submodule of the role, on purpose: it gets no optimizer, no
    checkpoint entry and no strategy wrapping (a resumed run rebuilds the identical base before
    loading its checkpoint). A LoRA role needs none: its reference is its model with the adapter
    disabled.
    """

    model: nn.Module


class PolicyRole(L.LightningModule):
    """A causal LM policy with its own AdamW, updated by clipped policy gradient.

    Args:
        config: the role's model, optimizer, sampling and update settings.
        device: where a 4-bit base is loaded (the process's own device, ``fabric.device``).
        shared: train a LoRA adapter named :attr:`adapter_name` on this shared base instead of
            loading a model of its own.
    """

    adapter_name: ClassVar[str] = "policy"  # the role's adapter on a shared base

    def __init__(self, config: RoleConfig, device: torch.device | None = None,
                 shared: SharedBase | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.tokenizer = load_tokenizer(config.model)
        # Before the weights load: a template asked for but missing is refused in a second.
        self.chat = ChatFormat.of(self.tokenizer, config.model.chat_template, config.model.system_prompt,
                                  f"{self.adapter_name}.model.chat_template")
        self._shared = shared
        self.model = (shared.attach(self.adapter_name, config.model) if shared is not None
                      else load_causal_lm(config.model, device))
        self.processes = Processes()  # until PolicyUpdate.set_up binds the run's processes
        self.optimizer: torch.optim.Optimizer | None = None
        self.autocast: Callable[[], AbstractContextManager] = nullcontext
        # The KL reference is the base model: with LoRA, these weights with the adapter disabled;
        # otherwise a frozen copy, made only when the KL term is on.
        self.reference = (FrozenReference(copy.deepcopy(self.model).eval().requires_grad_(False))
                          if config.update.loss.beta != 0.0 and not _is_peft(self.model) else None)
        if _is_peft(self.model):
            self._checkpoint_adapter_only()

    # -- wiring ---------------------------------------------------------------------------------
    def bind(self, processes: Processes, optimizer: torch.optim.Optimizer,
             autocast: Callable[[], AbstractContextManager]) -> None:
        """Take the run's processes, this role's live optimizer and the precision's autocast, once
        Fabric has set the role up (:meth:`~infuser.rl.update.PolicyUpdate.set_up`): sampling splits
        prompts by the processes, influence preconditions with the optimizer's state, and the
        influence pass (:meth:`surrogate_loss`), which calls the model itself rather than through the
        strategy's wrapper, runs under the autocast that the wrapper's forwards get."""
        self.processes, self.optimizer, self.autocast = processes, optimizer, autocast

    def activate(self) -> None:
        """Make this role's adapter the one the shared base runs and trains; no-op on an own model.

        Every method below that runs the model calls it first; it is not undone afterwards (see
        :class:`~infuser.models.SharedBase`).
        """
        if self._shared is not None:
            self._shared.activate(self.adapter_name)

    def export(self, directory: Path) -> None:
        """Save the model (or its LoRA adapter) and tokenizer with ``save_pretrained``, for ``infuser eval``.

        Every process calls it; rank 0 writes. Sharded parameters are gathered into whole tensors
        first (a collective), so the files are those of an unsharded model. On a shared base only
        this role's adapter is written, in the layout of an unshared one (peft puts a named adapter
        in a sub-folder of that name; its files are moved up).
        """
        self.activate()
        whole = whole_weights(self.model) if self.processes.shards_parameters else None
        if not self.processes.is_main:
            return
        if self._shared is None:
            self.model.save_pretrained(directory, state_dict=whole)
        else:
            self.model.save_pretrained(directory, selected_adapters=[self.adapter_name])
            nested = Path(directory) / self.adapter_name
            for item in nested.iterdir():
                item.replace(Path(directory) / item.name)
            nested.rmdir()
        self.tokenizer.save_pretrained(directory)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What this role's optimizer updates: its adapter on a shared base, else what requires grad."""
        if self._shared is not None:
            return self._shared.adapter_parameters(self.adapter_name)
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.config.optimizer
        return torch.optim.AdamW(self.trainable_parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                 weight_decay=opt.weight_decay)

    def optimizer_state(self) -> torch.optim.Optimizer:
        """The live optimizer (its state is what optimizer-aware influence preconditions with)."""
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__} has no optimizer yet: set it up with PolicyUpdate.set_up")
        return self.optimizer

    def _checkpoint_adapter_only(self) -> None:
        """Make the state dict of a LoRA role its trainable weights only.

        The frozen base is rebuilt from configuration when a run resumes, so saving it is waste:
        two roles on a shared base would each save (and load) the whole base, and a 4-bit base's
        state dict (bitsandbytes' quantization state) does not even load back strictly. Loading
        therefore does not miss the frozen entries either; a missing adapter weight still fails.
        """
        trainable = {id(p) for p in self.trainable_parameters()}
        owned = frozenset(name for name, p in self.named_parameters() if id(p) in trainable)

        def drop_frozen(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
            for key in [k for k in state if k.startswith(prefix) and k[len(prefix):] not in owned]:
                del state[key]

        def forgive_frozen(module: nn.Module, incompatible) -> None:
            # taken now, not at construction: a shared base gains the other role's adapter later
            entries = itertools.chain(module.named_parameters(remove_duplicate=False),
                                      module.named_buffers(remove_duplicate=False))
            frozen = {name for name, _ in entries} - owned
            incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not _names_one_of(k, frozen)]

        self.register_state_dict_post_hook(drop_frozen)
        self.register_load_state_dict_post_hook(forgive_frozen)

    # -- sampling -------------------------------------------------------------------------------
    def rollout(self, prompts: list[str], num_samples: int, stream: torch.Generator | None = None,
                sampling: SamplingConfig | None = None, prompt_offset: int = 0, lockstep: Lockstep | None = None
                ) -> RolloutBatch:
        self.activate()
        return generate(self.model, self.tokenizer, prompts, self.chat.sampling(sampling or self.config.sampling),
                        num_samples, stream, prompt_offset, lockstep)

    def sample(self, prompts: list[str], num_samples: int, stream: torch.Generator | None = None,
               sampling: SamplingConfig | None = None) -> SplitRollouts:
        """``num_samples`` completions of every prompt, the prompts split across processes.

        This process samples its contiguous shard of ``prompts`` at their global positions, so the
        processes together draw exactly what one process sampling every prompt draws (see
        :func:`~infuser.rollout.engine.generate`); every process receives every row's text, length
        and truncation flag. A process with an empty shard still takes the call's draw from
        ``stream``, to stay in step with the others. Under sharded parameters each role's model
        is gathered once for the call (:func:`~infuser.sharding.gathered`) and every process runs
        it as often as the others, whatever its rows.
        """
        processes = self.processes
        shard = processes.shard(len(prompts))
        if processes.lockstep is not None:
            with gathered(self.model):
                batch = self.rollout(prompts[shard.start : shard.stop], num_samples, stream, sampling, shard.start,
                                     processes.lockstep)
        elif shard:
            batch = self.rollout(prompts[shard.start : shard.stop], num_samples, stream, sampling, shard.start)
        else:
            call_seed(stream)
            batch = self.placeholder(0)
        return self._split(batch, shard, num_samples)

    def written(self, prompts: list[str], completions: list[str], num_samples: int) -> SplitRollouts:
        """``completions`` (``num_samples`` per prompt, prompt-major), each ended by the end-of-text
        token (the end-of-turn token with a chat template), as rows of this role's rollouts, split across processes as :meth:`sample` splits them.

        A scripted arm's rows (written by rule, not sampled) then go through the records and
        metrics of sampled ones. Their sampling log-probs are 0, since no policy sampled them:
        they must never train the role.
        """
        shard = self.processes.shard(len(prompts))
        held = completions[shard.start * num_samples : shard.stop * num_samples]
        batch = (teacher_forced_batch(self.tokenizer, prompts[shard.start : shard.stop], held,
                                      next(self.model.parameters()).device, num_samples, self.chat.end_id)
                 if held else self.placeholder(0))
        return self._split(batch, shard, num_samples)

    def _split(self, batch: RolloutBatch, shard: range, num_samples: int) -> SplitRollouts:
        """This process's ``batch`` of the prompts in ``shard``, with every process's texts, lengths
        and truncation flags."""
        lengths = batch.completion_mask.sum(-1).tolist()
        rows = self.processes.gather(list(zip(batch.texts, lengths, batch.truncated.tolist())))
        return SplitRollouts(batch=batch, prompts=shard, num_samples=num_samples, texts=[text for text, _, _ in rows],
                             lengths=torch.tensor([length for _, length, _ in rows]),
                             truncated=torch.tensor([flag for _, _, flag in rows], dtype=torch.bool))

    # -- the loss -------------------------------------------------------------------------------
    def loss_mask(self, batch: RolloutBatch) -> Tensor:
        """Which completion tokens enter the loss (truncated rows dropped when configured)."""
        mask = batch.completion_mask
        if self.config.update.mask_truncated_completions:
            mask = mask * (~batch.truncated).unsqueeze(-1).to(mask.device, mask.dtype)
        return mask

    def training_step(self, rollouts: ScoredRollouts, totals: BatchTotals, old_logps: Tensor | None = None,
                      ref_logps: Tensor | None = None) -> MicroBatchOutput:
        """Loss of one micro-batch under the current policy (the forward of one accumulation step).

        ``old_logps`` default to the current log-probs, detached (ratio 1: a single step).
        """
        self.activate()
        loss_config = self.config.update.loss
        entropy_grad = loss_config.entropy_coef != 0.0
        logps, entropy = self._completion_logps(self.model, rollouts.batch, with_entropy=True,
                                                entropy_grad=entropy_grad)
        mask = self.loss_mask(rollouts.batch)
        old = logps.detach() if old_logps is None else old_logps
        out = policy_loss(logps, old, rollouts.advantages, mask, loss_config, totals,
                          sampling_logps=rollouts.batch.sampling_logps, ref_logps=ref_logps,
                          entropy=entropy if entropy_grad else None)
        return MicroBatchOutput(loss=out, mask=mask, entropy=entropy.detach())

    def logps_step(self, batch: RolloutBatch, reference: bool = False) -> Tensor:
        """Completion log-probs of ``batch`` under the policy, or with ``reference`` the KL reference:
        the forward of the passes before an update's first step (called without gradient). A
        forward method of the strategy wrapper, like :meth:`training_step`: a strategy that
        gathers sharded parameters in its forward sees it, and every process calls it as often as
        the others (see :class:`~infuser.rl.update.PolicyUpdate`)."""
        self.activate()
        with self._reference_policy() if reference else nullcontext(self.model) as model:
            return self._completion_logps(model, batch)[0]

    def surrogate_loss(self, rollouts: ScoredRollouts) -> Tensor:
        """On-policy (ratio 1) policy term over ``rollouts``: the quantity influence differentiates.

        Normalised by ``rollouts.totals`` when set (a share of a batch split across processes, see
        :meth:`shared_totals`), else by the rows' own totals. Only the policy-gradient term: no KL,
        entropy bonus or importance weight, which are regularisers of the update rather than the
        signal of the rollouts.
        """
        self.activate()
        batch = rollouts.batch
        with self.autocast():
            logps, _ = self._completion_logps(self.model, batch)
        config = dataclasses.replace(self.config.update.loss, beta=0.0, entropy_coef=0.0)
        return policy_loss(logps, logps.detach(), rollouts.advantages, self.loss_mask(batch), config,
                           rollouts.totals or self._own_totals(batch)).loss

    def micro_batches(self, rollouts: ScoredRollouts) -> list[ScoredRollouts]:
        """``rollouts`` in pieces of at most ``update.micro_batch_size`` rows, each normalised by the
        totals of the whole: the pieces' :meth:`surrogate_loss` values add up to the whole's, and
        so do their gradients. This is how influence bounds its memory by the same setting that
        bounds the update's. Under sharded parameters every process returns as many pieces as the
        busiest one (placeholders that add nothing), since each backward is a collective there.

        Rows that add exactly nothing to the policy term are left out, as in an update: a zero
        advantage, or no token in the loss mask. Rows keep their order (a question's answers
        stay together and share their prompt's prefill).
        """
        batch = rollouts.batch
        totals = rollouts.totals or self._own_totals(batch)
        rows = carrying_gradient(self.loss_mask(batch), rollouts.advantages.detach().cpu()).nonzero().squeeze(-1)
        pieces = rows.split(self.config.update.micro_batch_size) if len(rows) else ()  # split() of nothing: [nothing]
        made = [ScoredRollouts(batch.select(piece), rollouts.advantages[piece], totals) for piece in pieces]
        if self.processes.lockstep is None:
            return made
        # every process differentiates its share of the same rows: as many backwards as the busiest
        count = int(self.processes.stack(torch.tensor(len(made))).max())
        placeholder = ScoredRollouts(self.placeholder(1), torch.zeros(1), totals)
        return made + [placeholder] * (count - len(made))

    def _own_totals(self, batch: RolloutBatch) -> BatchTotals:
        """The normalisers of ``batch`` taken on its own (not as a share of a larger batch)."""
        return BatchTotals(sequences=len(batch), tokens=int(self.loss_mask(batch).sum()),
                           max_completion_length=self.dr_grpo_length(batch))

    def shared_totals(self, batch: RolloutBatch) -> BatchTotals:
        """The totals of the batch whose share on this process is ``batch`` (every process calls this
        with its own share): shares' losses normalised by them have gradients that sum, over the
        processes, to the whole batch's gradient. On one process: ``batch``'s own totals."""
        sizes = self.processes.stack(torch.tensor([len(batch), int(self.loss_mask(batch).sum()),
                                                   self.dr_grpo_length(batch)]))
        return BatchTotals(sequences=int(sizes[:, 0].sum()), tokens=int(sizes[:, 1].sum()),
                           max_completion_length=int(sizes[:, 2].max()))

    # -- advantages and log-probs -----------------------------------------------------------------
    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        return self.config.advantage(rewards, groups)

    def _completion_logps(self, model: nn.Module, batch: RolloutBatch, with_entropy: bool = False,
                          entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
        """Completion log-probs at the sampling temperature. Prompts are shared unless checkpointing,
        or unless the parameters are sharded: prompt sharing takes one forward call or two depending
        on the rows, and every process must make the same calls."""
        share = not self.config.model.gradient_checkpointing and self.processes.lockstep is None
        return completion_logps(model, batch, self.config.sampling.temperature, with_entropy, entropy_grad,
                                share_prompts=share)

    def dr_grpo_length(self, batch: RolloutBatch) -> int:
        """The ``dr_grpo`` loss's constant divisor: the configured length, else the longest completion
        this role may sample (or ``batch`` holds)."""
        configured = self.config.update.loss.max_completion_length
        return configured or max(self.config.sampling.max_new_tokens, batch.completion_ids.size(1))

    @contextmanager
    def _reference_policy(self) -> Iterator[nn.Module]:
        """The KL reference: the frozen copy, or the LoRA model with its adapter disabled (no copy)."""
        if self.reference is not None:
            yield self.reference.model.to(next(self.model.parameters()).device)
            return
        with self.model.disable_adapter():
            yield self.model

    def placeholder(self, rows: int) -> RolloutBatch:
        """:meth:`RolloutBatch.placeholder` rows for this role's model."""
        return RolloutBatch.placeholder(rows, self.tokenizer.pad_token_id, next(self.model.parameters()).device)


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def _names_one_of(key: str, names: set[str]) -> bool:
    """Whether state-dict ``key`` is one of ``names`` (relative to the role), possibly under the
    prefix of a module the role sits in."""
    while key not in names:
        _, dot, key = key.partition(".")
        if not dot:
            return False
    return True
