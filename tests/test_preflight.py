"""A run that cannot work is refused in one line naming the key, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants

from infuser.cli import main
from infuser.config import ConfigurationError, LoopConfig, RoleConfig, RunSetup
from infuser.influence.lora_grad import LoraGradInfluence
from infuser.influence.tracin import TracInCheckpoint, TracInInfluence
from infuser.model_config import LoraConfig, ModelConfig
from infuser.preflight import check_before_loading, check_model_source
from infuser.rl.generator_rewards import InfluenceReward, SpiceVarianceReward

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def _error(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """The one line ``infuser fit --config configs/toy.yaml ARGUMENTS`` writes when it refuses."""
    assert main(["fit", "--config", "configs/toy.yaml", *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def _setup(solver_lora: LoraConfig | None = None, strategy: str = "auto",
           solver_data: str = "generated") -> RunSetup:
    return RunSetup(generator=RoleConfig(), solver=RoleConfig(model=ModelConfig(lora=solver_lora)),
                    loop=LoopConfig(solver_data=solver_data), strategy=strategy, share_base=False)


def test_missing_local_model_folder_names_key_and_path(in_repository, no_model_loading, capsys):
    assert _error(capsys, "--solver.model.name_or_path", "/nonexistent/model") == \
        "infuser: error: solver.model.name_or_path: no such folder: /nonexistent/model"


def test_folder_without_a_saved_model_is_refused(in_repository, no_model_loading, tmp_path, capsys):
    assert _error(capsys, f"--generator.model.name_or_path={tmp_path}") == (
        f"infuser: error: generator.model.name_or_path: {tmp_path} holds no config.json or adapter_config.json; "
        "expected a folder written by save_pretrained, a Hugging Face id or builtin:toy")


def test_uncached_hub_id_offline_says_so(in_repository, no_model_loading, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _error(capsys, "--solver.model.name_or_path", "nobody-here/no-such-model") == (
        "infuser: error: solver.model.name_or_path: nobody-here/no-such-model is not a local folder and not in the "
        f"Hugging Face cache ({constants.HF_HUB_CACHE}), and downloads are off (HF_HUB_OFFLINE); download it while "
        "online or give a local folder")


def test_saved_model_folder_passes(tiny_model_dir):
    check_model_source("solver.model", ModelConfig(name_or_path=str(tiny_model_dir)))


def test_lora_grad_without_a_lora_solver_is_refused(in_repository, no_model_loading, capsys):
    assert _error(capsys, "--influence", "lora_grad") == (
        "infuser: error: influence: lora_grad differentiates the Solver's LoRA adapter and the Solver has none; set "
        "solver.model.lora (e.g. --solver.model.lora '{r: 16}') or choose another estimator")


def test_lora_grad_projection_under_a_sharding_strategy_is_refused():
    with pytest.raises(ConfigurationError) as refused:
        check_before_loading(_setup(LoraConfig(r=4), strategy="fsdp"), LoraGradInfluence(projection_dim=64),
                             InfluenceReward())
    assert str(refused.value) == ("influence.init_args.projection_dim: lora_grad projects whole LoRA gradients and "
                                  "trainer.strategy fsdp splits them over processes; set projection_dim: null")
    check_before_loading(_setup(LoraConfig(r=4), strategy="fsdp"), LoraGradInfluence(projection_dim=None),
                         InfluenceReward())


def test_an_estimator_that_never_runs_is_not_asked():
    """Pass-rate rewards skip the influence stage; a Solver trained on the target set skips the Generator."""
    check_before_loading(_setup(), LoraGradInfluence(), SpiceVarianceReward())
    check_before_loading(_setup(solver_data="target"), LoraGradInfluence(), InfluenceReward())


def test_tracin_checkpoint_that_does_not_exist_is_refused(tmp_path):
    estimator = TracInInfluence(checkpoints=[TracInCheckpoint(path=str(tmp_path / "gone.ckpt"), lr=1e-3)])
    with pytest.raises(ConfigurationError) as refused:
        check_before_loading(_setup(), estimator, InfluenceReward())
    assert str(refused.value) == f"influence.init_args.checkpoints[0].path: no such file: {tmp_path / 'gone.ckpt'}"
