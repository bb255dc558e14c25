"""Entry-point registry: registered names in YAML and on the command line, listing, errors, plug-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

from infuser import cli, registry
from infuser.advantages import DuGRPOAdvantage
from infuser.bench.influence import bench_influence
from infuser.fit import fit
from infuser.influence.lora_grad import LoraGradInfluence
from infuser.influence.tracin import TracInInfluence

PLUGIN = Path(__file__).parent / "plugins" / "infuser_example_plugin"
TRACIN = "infuser.influence.tracin.TracInInfluence"
CONFIGS = Path(__file__).parent.parent / "configs"
# keys whose plain string value names a component (``advantage: dugrpo``); ``class_path`` always does
COMPONENT_KEYS = {"advantage", "influence", "generator_reward", "documents", "target_set", "heldout_set", "task"}


def test_builtins_are_registered_like_plugins():
    for kind, names in {"influence": {"optimizer_aware", "tracin", "lora_grad"},
                        "advantage": {"grpo", "dr_grpo", "batch_std", "dugrpo"},
                        "documents": {"toy", "jsonl"}, "questions": {"toy", "jsonl"}, "task": {"multiple_choice"},
                        "benchmark": {"influence"}}.items():
        assert names <= set(registry.registered(kind)), kind
    assert registry.resolve("influence", "tracin") is TracInInfluence


def _component_names(node: object, key: str = "") -> list[tuple[str, str]]:
    """Every ``(key, name)`` in a loaded YAML tree where a component is named."""
    if isinstance(node, dict):
        return [found for k, v in node.items() for found in _component_names(v, str(k))]
    if isinstance(node, list):
        return [found for item in node for found in _component_names(item, key)]
    return [(key, node)] if isinstance(node, str) and (key == "class_path" or key in COMPONENT_KEYS) else []


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_name_components_by_registered_name(config):
    """A shipped config is what users copy: it names components as they should (``dugrpo``, not
    ``DuGRPOAdvantage`` or an import path), so that it survives a class's move."""
    names = {name for kind in registry.KINDS for name in registry.registered(kind)}
    unregistered = [f"{key}: {name}" for key, name in _component_names(yaml.safe_load(config.read_text()))
                    if name not in names]
    assert not unregistered, f"{config.name} names components by other than their registered names: {unregistered}"


def test_expand_rewrites_registered_names_only_where_a_component_is_expected():
    config = {
        "influence": {"class_path": "lora_grad", "init_args": {"projection_dim": 64}},
        "solver": {"advantage": "dugrpo", "update": {"loss": {"loss_type": "dr_grpo"}}},
        "generator": {"advantage": "DuGRPOAdvantage"},  # a registered member's class name, without importing it
        "documents": "infuser.toy.sources.ToyDocuments",  # an import path passes through
        "target_set": {"class_path": "toy", "init_args": {"split": "target"}},  # Optional[QuestionSource]
        "seed": 3,
    }
    expanded = registry.expand_arguments(fit, config)
    assert expanded["influence"] == {"class_path": "infuser.influence.lora_grad.LoraGradInfluence",
                                     "init_args": {"projection_dim": 64}}
    assert expanded["solver"]["advantage"] == "infuser.advantages.DuGRPOAdvantage"
    assert expanded["solver"]["update"]["loss"]["loss_type"] == "dr_grpo"  # a string, not a component
    assert expanded["generator"] == {"advantage": "infuser.advantages.DuGRPOAdvantage"}
    assert expanded["documents"] == config["documents"]
    assert expanded["target_set"]["class_path"] == "infuser.toy.sources.ToyQuestions"
    bench = registry.expand_arguments(bench_influence, {"estimators": [{"name": "t", "estimator": "tracin"}]})
    assert bench["estimators"][0]["estimator"] == TRACIN  # inside a list of dataclasses


def test_expand_option_handles_every_command_line_form():
    assert registry.expand_option(fit, "influence", "tracin") == TRACIN
    assert registry.expand_option(fit, "influence.class_path", "tracin") == TRACIN
    assert registry.expand_option(fit, "solver.advantage", "dugrpo") == "infuser.advantages.DuGRPOAdvantage"
    assert TRACIN in registry.expand_option(fit, "influence", "{class_path: tracin, init_args: {cosine: true}}")
    assert registry.expand_option(fit, "loop.iterations", "3") == "3"
    assert registry.expand_option(fit, "influence.init_args.mode", "dot") == "dot"


def test_unknown_name_lists_what_is_installed():
    with pytest.raises(registry.RegistryError, match=r"influence: no influence component named 'nope'; installed: "
                                                     r"lora_grad \(.*\), optimizer_aware \(.*\), tracin \("):
        registry.expand_arguments(fit, {"influence": "nope"})


def _parse(argv: list[str]):
    parser = cli.build_parser()
    config = parser.parse_args(cli.expand_argv(argv))
    return parser.instantiate(config)


def test_fit_accepts_registered_names_from_yaml_and_flags(tmp_path):
    (tmp_path / "run.yaml").write_text(textwrap.dedent("""
        influence:
          class_path: tracin
          init_args: {cosine: true}
        solver:
          advantage: dugrpo
    """))
    parsed = _parse(["fit", "--config", str(tmp_path / "run.yaml")]).fit
    assert isinstance(parsed.influence, TracInInfluence) and parsed.influence.cosine
    assert isinstance(parsed.solver.advantage, DuGRPOAdvantage)
    overridden = _parse(["fit", "--config", str(tmp_path / "run.yaml"), "--influence", "lora_grad",
                         "--influence.init_args.projection_dim", "32"]).fit
    assert isinstance(overridden.influence, LoraGradInfluence) and overridden.influence.projection_dim == 32


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("influence: nope\n")
    assert cli.main(["fit", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert cli.main(["fit", "--influence.class_path=nope"]) == 2
    assert cli.main(["list", "nope"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("infuser: error: ") for line in lines)
    assert "no influence component named 'nope'; installed: lora_grad" in lines[0]
    assert "influence.class_path" in lines[1]
    assert "invalid choice: 'nope' (choose from 'influence', 'advantage', 'generator_reward'" in lines[2]


def test_name_clash_is_an_error_listing_both(monkeypatch, capsys):
    clash = EntryPoint("tracin", "someone_else.influence:TracIn", "infuser.influence")
    original = registry.entry_points
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [*original(group=group), *([clash] if group == "infuser.influence" else [])])
    with pytest.raises(registry.RegistryError, match="two influence plug-ins are registered as 'tracin'"):
        registry.registered("influence")
    assert cli.main(["list", "influence"]) == 2
    error = capsys.readouterr().err
    assert "infuser.influence.tracin:TracInInfluence" in error and "someone_else.influence:TracIn" in error


def test_list_prints_name_origin_and_parameters(capsys):
    assert cli.main(["list", "influence"]) == 0
    out = capsys.readouterr().out
    assert "infuser.influence.lora_grad:LoraGradInfluence" in out and "[infuser " in out
    assert "projection_dim=8192" in out and "mode='preconditioned_cosine'" in out


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plug-in pip-installed into a folder of its own (the test environment is untouched)."""
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(PLUGIN, source)  # setuptools builds in the source tree: keep the repository clean
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def test_third_party_plugin_is_discovered_and_selected_from_yaml(plugin_site, tmp_path):
    (tmp_path / "run.yaml").write_text("influence:\n  class_path: random_baseline\n  init_args: {seed: 5}\n")
    script = textwrap.dedent(f"""
        from infuser import cli
        assert cli.main(["list", "influence"]) == 0
        parser = cli.build_parser()
        config = parser.parse_args(cli.expand_argv(["fit", "--config", {str(tmp_path / "run.yaml")!r}]))
        influence = parser.instantiate(config).fit.influence
        print("selected", type(influence).__module__, type(influence).__name__, influence.seed)
    """)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "random_baseline" in result.stdout and "[infuser-example-plugin 0.1.0]" in result.stdout
    assert "selected infuser_example_plugin RandomInfluence 5" in result.stdout


def test_generic_layers_do_not_import_the_toy_worlds():
    """data/ holds generic sources and models.py loads any checkpoint: the toy worlds plug into both
    (entry points), never the other way round."""
    import ast

    source = Path(__file__).resolve().parents[1] / "src" / "infuser"
    for path in [*sorted((source / "data").glob("*.py")), source / "models.py"]:
        tree = ast.parse(path.read_text())
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [name for name in imported if name.startswith("infuser.toy")], path
