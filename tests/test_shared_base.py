"""Two roles on one frozen base (``share_base``): independent adapters, influence on the Solver's
adapter only, checkpoints, export, the KL reference, ``fit`` end to end, and the refusals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch
from peft import PeftModel

from infuser.cli import main
from infuser.config import (
    ConfigurationError,
    OptimizerConfig,
    PolicyLossConfig,
    RoleConfig,
    SamplingConfig,
    TrainerConfig,
    UpdateConfig,
)
from infuser.data.prompts import PromptTemplates
from infuser.fit import fit
from infuser.influence.lora_grad import LoraGradInfluence
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.model_config import LoraConfig, ModelConfig, QuantizationConfig
from infuser.models import SharedBase, load_causal_lm
from infuser.rl.update import PolicyUpdate
from infuser.roles.generator import Generator
from infuser.roles.policy import PolicyRole
from infuser.roles.solver import Solver
from infuser.rollout.engine import completion_logps
from infuser.rollout.rows import RolloutBatch, ScoredRollouts

PROMPTS = ["Question: What is 3 plus 4?\nA) 6\nB) 7\nC) 8\nD) 9\nAnswer:", "Document: 5 times 2 is 10.\n",
           "Question: What is 9 minus 2?\nA) 5\nB) 6\nC) 7\nD) 8\nAnswer:"]
ADVANTAGES = torch.tensor([1.0, -0.5, 0.3, 0.7, -1.2, 0.3, -0.8, 0.2, 1.5])


@dataclass
class Setup:
    """Both roles on one base, set up under Fabric the way ``fit`` does it."""

    shared: SharedBase
    generator: Generator
    solver: Solver
    fabric: L.Fabric
    updates: dict[str, PolicyUpdate]  # by adapter name

    @property
    def checkpoint(self) -> dict:
        """What ``fit`` checkpoints of the roles: each role and its optimizer."""
        return {name: item for role in self.roles
                for name, item in ((role.adapter_name, role), (f"{role.adapter_name}_optimizer", role.optimizer))}

    @property
    def roles(self) -> tuple[Generator, Solver]:
        return self.generator, self.solver


def _config(model_dir: Path, beta: float = 0.0) -> RoleConfig:
    return RoleConfig(model=ModelConfig(name_or_path=str(model_dir), lora=LoraConfig(r=4, alpha=8)),
                      optimizer=OptimizerConfig(lr=5e-2, grad_clip=None),
                      sampling=SamplingConfig(temperature=0.8, max_new_tokens=8),
                      update=UpdateConfig(loss=PolicyLossConfig(beta=beta)))


def _setup(model_dir: Path, seed: int = 0, beta: float = 0.0) -> Setup:
    torch.manual_seed(seed)
    fabric = L.Fabric(accelerator="cpu", devices=1)
    shared = SharedBase(fabric.device)
    generator = Generator(_config(model_dir, beta), PromptTemplates(), device=fabric.device, shared=shared)
    solver = Solver(_config(model_dir, beta), PromptTemplates(), device=fabric.device, shared=shared)
    updates = {role.adapter_name: PolicyUpdate.set_up(fabric, role) for role in (generator, solver)}
    return Setup(shared, generator, solver, fabric, updates)


def _batch(role: PolicyRole, seed: int = 0) -> RolloutBatch:
    return role.rollout(PROMPTS, 3, torch.Generator().manual_seed(seed))


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {key for key in before if not torch.equal(before[key], after[key])}


def _ids(parameters) -> list[int]:
    return [id(p) for p in parameters]


def test_each_role_trains_its_own_adapter_and_nothing_else(tiny_model_dir):
    setup = _setup(tiny_model_dir)
    generator, solver = setup.roles
    assert generator.model is solver.model  # one base in memory
    own = {role: set(_ids(role.trainable_parameters())) for role in setup.roles}
    assert own[generator] and own[solver] and not own[generator] & own[solver]
    lora = {id(p) for name, p in setup.shared.model.named_parameters() if ".lora_" in name}
    assert own[generator] | own[solver] == lora
    for role in setup.roles:
        assert set(_ids(role.optimizer_state().param_groups[0]["params"])) == own[role]
    for role in (generator, solver, generator):
        batch = _batch(role)
        before = _snapshot(setup.shared.model)
        assert setup.updates[role.adapter_name](batch, ADVANTAGES).optimizer_steps == 1
        changed = _changed(before, _snapshot(setup.shared.model))
        assert any(".lora_B." in key for key in changed)
        assert all(f".{role.adapter_name}." in key for key in changed), "the update moved another role's weights"


def _candidates(solver: Solver) -> list[ScoredRollouts]:
    batch = _batch(solver, seed=7)
    return [ScoredRollouts(batch.select(rows), ADVANTAGES[rows]) for rows in ([0, 1, 2], [3, 4, 5], [6, 7, 8])]


@pytest.mark.parametrize("estimator", [OptimizerAwareInfluence, lambda: LoraGradInfluence(projection_dim=None)],
                         ids=["optimizer_aware", "lora_grad"])
def test_influence_reads_the_solver_adapter_only(tiny_model_dir, estimator):
    setup = _setup(tiny_model_dir)
    generator, solver = setup.roles
    for role in setup.roles:  # both adapters trained, the Solver's AdamW holding moments
        setup.updates[role.adapter_name](_batch(role), ADVANTAGES)
    target = ScoredRollouts(_batch(solver, seed=3), ADVANTAGES)
    candidates = _candidates(solver)
    adapter = setup.shared.adapter_parameters("solver")

    def scores() -> torch.Tensor:
        generator.activate()  # the Generator ran last, as after its update in the loop
        made = estimator()
        made.prepare(solver, target)
        assert _ids(made._flat.parameters) == _ids(adapter)
        assert made._flat.numel == sum(p.numel() for p in adapter)
        return made.score(solver, candidates)

    first = scores()
    with torch.no_grad():
        for p in generator.trainable_parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(scores(), first)
    with torch.no_grad():  # the check can see a change: the Solver's own adapter does move the scores
        for p in adapter:
            p.add_(0.1 * torch.randn_like(p))
    assert not torch.equal(scores(), first)


def test_checkpoint_holds_each_adapter_once_and_resumes_exactly(tiny_model_dir, tmp_path):
    original = _setup(tiny_model_dir)
    for role in original.roles:
        original.updates[role.adapter_name](_batch(role), ADVANTAGES)
    original.fabric.save(tmp_path / "ckpt", original.checkpoint)
    saved = torch.load(tmp_path / "ckpt", weights_only=True)
    for role in original.roles:
        entries = saved[role.adapter_name]
        assert len(entries) == len(role.trainable_parameters())
        assert all(".lora_" in key and f".{role.adapter_name}." in key for key in entries)
    resumed = _setup(tiny_model_dir, seed=1)  # other adapter initialisations
    resumed.fabric.load(tmp_path / "ckpt", resumed.checkpoint)
    for ours, theirs in zip(resumed.roles, original.roles, strict=True):
        for p, q in zip(ours.trainable_parameters(), theirs.trainable_parameters(), strict=True):
            assert torch.equal(p, q)
    # the next step of each role, optimizer state included, is the one the original would take
    for ours, theirs in zip(resumed.roles, original.roles, strict=True):
        batch = _batch(theirs, seed=5)
        original.updates[theirs.adapter_name](batch, ADVANTAGES)
        resumed.updates[ours.adapter_name](batch, ADVANTAGES)
    assert not _changed(_snapshot(original.shared.model), _snapshot(resumed.shared.model))


def test_export_writes_each_roles_adapter_where_an_unshared_one_goes(tiny_model_dir, tmp_path):
    setup = _setup(tiny_model_dir)
    ids = torch.tensor([[5, 9, 3, 7, 2, 11]])
    for role in setup.roles:
        setup.updates[role.adapter_name](_batch(role), ADVANTAGES)
    for role in setup.roles:
        directory = tmp_path / role.adapter_name
        role.export(directory)
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= \
            {p.name for p in directory.iterdir()}
        assert not any(p.is_dir() for p in directory.iterdir())
        loaded = PeftModel.from_pretrained(load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir))), directory)
        role.activate()
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, role.model.eval()(input_ids=ids).logits)
        role.model.train()


def test_kl_reference_is_the_base_with_both_adapters_off(tiny_model_dir):
    setup = _setup(tiny_model_dir, beta=0.1)
    generator, solver = setup.roles
    for role in (generator, solver, generator, solver):
        stats = setup.updates[role.adapter_name](_batch(role), ADVANTAGES)
    assert stats.kl > 0
    batch = _batch(solver, seed=4)
    base = load_causal_lm(ModelConfig(name_or_path=str(tiny_model_dir)))
    with torch.no_grad(), solver._reference_policy() as reference:
        ours, _ = completion_logps(reference, batch, 0.8)
        theirs, _ = completion_logps(base, batch, 0.8)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # afterwards the Solver's adapter runs and trains again, the Generator's does not
    assert setup.shared.model.active_adapter == "solver"
    assert all(p.requires_grad for p in solver.trainable_parameters())
    assert not any(p.requires_grad for p in generator.trainable_parameters())


# -- refused before any model loads -------------------------------------------------------------


def _role(model_dir: Path, lora: bool = True, **model) -> RoleConfig:
    return RoleConfig(model=ModelConfig(name_or_path=str(model_dir), lora=LoraConfig() if lora else None, **model))


@pytest.mark.parametrize("generator, solver, trainer, expected", [
    ({"lora": False}, {}, TrainerConfig(), "set generator.model.lora"),
    ({}, {"lora": False}, TrainerConfig(), "set solver.model.lora"),
    ({"dtype": "bfloat16"}, {}, TrainerConfig(), "generator.model.dtype ('bfloat16') differs from solver.model.dtype"),
    ({"revision": "v2"}, {}, TrainerConfig(), "generator.model.revision"),
    ({}, {"quantization": QuantizationConfig()}, TrainerConfig(), "generator.model.quantization (None) differs"),
    ({}, {"gradient_checkpointing": True}, TrainerConfig(), "generator.model.gradient_checkpointing"),
    ({}, {}, TrainerConfig(strategy="fsdp"), "share_base: trainer.strategy fsdp"),
])
def test_shared_base_combinations_that_cannot_work_are_refused(no_model_loading, tiny_model_dir, tmp_path, generator,
                                                               solver, trainer, expected):
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        fit(generator=_role(tiny_model_dir, **generator), solver=_role(tiny_model_dir, **solver), trainer=trainer,
            share_base=True, run_dir=str(tmp_path / "run"))


def test_the_cli_refuses_a_shared_base_without_adapters_in_one_line(capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(["fit", "--config", "configs/toy.yaml", "--share_base=true"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("infuser: error:")]
    assert len(errors) == 1 and "share_base" in errors[0] and "generator.model.lora" in errors[0]


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_with_a_shared_base_runs_checkpoints_resumes_and_exports(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    run_dir = tmp_path / "run"

    def args(iterations: int, *extra: str) -> list[str]:
        return ["fit", "--config", "configs/toy.yaml", "--share_base=true",
                f"--generator.model.name_or_path={tiny_model_dir}", f"--solver.model.name_or_path={tiny_model_dir}",
                '--generator.model.lora={"r": 4, "alpha": 8}', '--solver.model.lora={"r": 4, "alpha": 8}',
                f"--loop.iterations={iterations}", "--loop.documents_per_iteration=2",
                "--loop.questions_per_document=2", "--loop.answers_per_question=2",
                "--loop.target_answers_per_question=2", "--loop.eval_samples=1",
                "--target_set.init_args.size=4", "--heldout_set.init_args.size=4", f"--run_dir={run_dir}", *extra]

    assert main(args(1)) == 0
    checkpoint = torch.load(run_dir / "checkpoints" / "iter_00001.ckpt", weights_only=True)
    for name in ("generator", "solver"):
        assert checkpoint[name] and all(".lora_" in key and f".{name}." in key for key in checkpoint[name])
    assert main(args(2, "--ckpt_path=last")) == 0
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 2
    for name in ("generator", "solver"):
        config = json.loads((run_dir / "final" / name / "adapter_config.json").read_text())
        assert config["r"] == 4 and (run_dir / "final" / name / "adapter_model.safetensors").is_file()
