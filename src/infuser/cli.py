"""The ``infuser`` command: ``fit``, ``eval``, ``target-set``, ``plot``, ``list`` and ``bench``.

Built on jsonargparse directly rather than LightningCLI: LightningCLI is organised around a
``Trainer`` and a single LightningModule, while infuser has two modules, a custom loop and plain
typed functions as entry points. jsonargparse gives the same experience (YAML with
``class_path``/``init_args``, dotted overrides such as ``--loop.iterations 3``, ``--print_config``)
straight from the type hints of :func:`infuser.fit.fit`.

Components may be named by their registered entry-point name (``influence: tracin``) as well as
by class name or import path: registered names in ``--config`` files and on the command line are
rewritten to import paths (:func:`infuser.registry.expand`) before jsonargparse parses them.

Every command answers at once. Only the parser of the command being run is built from its
function's signature; parsing imports the configuration dataclasses and the components a
configuration names, none of which imports torch (:mod:`infuser.lazy`); ``infuser --help`` and
``infuser list`` import no component at all (:mod:`infuser.signatures`). Torch, Lightning and
transformers load when a command starts its work. ``benchmarks/cli_startup.py`` measures it.
"""

from __future__ import annotations

import logging
import os
import sys
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from infuser import registry, signatures
from infuser.cli_help import SectionedParser, plain_text
from infuser.config import ConfigurationError, IdleRunError
from infuser.run_config import ResolvedConfig


@dataclass(frozen=True)
class Command:
    """A subcommand parsed from the signature of a function (``module:function``, imported only
    when the subcommand is run or asked for help)."""

    target: str
    help: str

    def load(self) -> Callable[..., object]:
        module, _, name = self.target.partition(":")
        return getattr(import_module(module), name)


COMMANDS: dict[str, Command] = {
    "fit": Command("infuser.fit:fit", "Co-train a Generator and a Solver (the INFUSER loop)."),
    "eval": Command("infuser.eval.run:evaluate",
                    "Score a model, or saved predictions, on OlympiadBench, SuperGPQA and HumanEval(+)."),
    "target-set": Command("infuser.eval.target_set:build_target_set",
                          "Write a seeded SuperGPQA subset as a target set (JSONL + manifest)."),
}
LIST_HELP = "List the installed components (of every kind, or of one) with their parameters."
PLOT_HELP = "Draw a run's learning curves as PNG, or compare several runs on one figure."

# Subcommands whose own subcommands are the installed members of a registry kind:
# ``infuser bench influence`` runs the benchmark registered as ``influence``.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "bench": ("benchmark", "Run a registered benchmark, e.g. `infuser bench influence --config FILE`."),
}

# The generated usage of ``fit`` lists its 160 options; the sections of --help say them better.
_USAGE = "%(prog)s [-h] [--config FILE] [--print_config] [--KEY VALUE ...]"


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "your input is wrong" (they name the file, line or key): one line, no traceback."""
    from infuser.artifacts import CheckpointError
    from infuser.data.documents import CorpusError
    from infuser.data.jsonl import JSONLineError
    from infuser.data.question_sets import QuestionSetError
    from infuser.eval.sources import DatasetError, RowError
    from infuser.plots import RunDataError

    return (registry.RegistryError, ConfigurationError, CorpusError, QuestionSetError, JSONLineError,
            CheckpointError, DatasetError, RowError, RunDataError, IdleRunError)


def list_components(kind: str | None = None) -> None:
    """Print the installed components of ``kind`` (every kind when ``None``): registered name,
    origin, summary and parameters, read without importing them."""
    for index, name in enumerate([kind] if kind is not None else list(registry.KINDS)):
        members = registry.registered(name)
        print(("\n" if index else "") + f"{name} components (entry-point group {registry.KINDS[name].group}):")
        width = max((len(entry.value) for entry in members.values()), default=0)
        for member, entry in sorted(members.items()):
            described = signatures.describe(entry)
            print(f"  {member:<18} {entry.value:<{width}}  [{registry.origin(entry)}]")
            if described.summary:
                print(f"  {'':<18} {plain_text(described.summary)}")
            print(f"  {'':<18} {described.rendered()}")


def _config_file_action(function: Callable[..., object]) -> type[ActionConfigFile]:
    """``--config`` for ``function``: registered names in the file are expanded before parsing."""

    class ConfigFile(ActionConfigFile):
        def __call__(self, parser, cfg, values, option_string=None):
            path = Path(values)
            loaded = _load_yaml(path) if path.is_file() else _load_yaml_text(values)
            expanded = registry.expand_arguments(function, loaded) if isinstance(loaded, dict) else loaded
            if expanded == loaded:
                return super().__call__(parser, cfg, values, option_string)
            # Parse the rewritten text from the file's folder, as jsonargparse does for a path,
            # so relative references inside the file keep their meaning.
            folder = path.parent if path.is_file() else Path.cwd()
            previous = Path.cwd()
            os.chdir(folder)
            try:
                self.apply_config(parser, cfg, self.dest, yaml.safe_dump(expanded, sort_keys=False))
            finally:
                os.chdir(previous)
            return None

    return ConfigFile


def _load_yaml(path: Path) -> object:
    """A configuration file's content; a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        return None  # jsonargparse reports unreadable files itself
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigurationError(f"{where}: invalid YAML: {' '.join(problem.split())}") from None


def _load_yaml_text(text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # not a path and not YAML: jsonargparse says which


def _function_parser(function: Callable[..., object]) -> ArgumentParser:
    parser = SectionedParser(usage=_USAGE, description=plain_text(signatures.summary(function.__doc__ or "")))
    parser.add_argument("--config", action=_config_file_action(function), help="a YAML file of arguments")
    parser.add_function_arguments(function, fail_untyped=False)
    return parser


def _list_parser() -> ArgumentParser:
    parser = SectionedParser(description=LIST_HELP)
    parser.add_argument("kind", nargs="?", choices=list(registry.KINDS), metavar="KIND",
                        help=f"one of {', '.join(registry.KINDS)}; every kind when left out")
    return parser


def _plot_parser() -> ArgumentParser:
    parser = SectionedParser(description=PLOT_HELP)
    parser.add_argument("runs", nargs="+", help="run folders (run_dir of infuser fit, each with logs/metrics.csv)")
    parser.add_argument("--output", default=None,
                        help="folder for learning_curves.png (default: RUN/plots for one run, plots/ for several)")
    return parser


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    """The ``infuser`` parser.

    With ``argv``, only the command it selects gets its real parser (built from the function's
    signature, which imports that command's module); the others are listed by name and help.
    Without, every command's parser is built.
    """
    # A ``class_path`` inside an untyped value (a benchmark arm's overrides) stays data: a
    # configuration file can instantiate only what a typed argument asks for.
    set_parsing_settings(instantiate_subclass_spec_in_any=False)
    selected = list(argv[:2]) if argv is not None else None

    def built(*path: str) -> bool:
        return selected is None or selected[:len(path)] == list(path)

    parser = SectionedParser(prog="infuser", description="Influence-guided self-evolution of language models.")
    subcommands = parser.add_subcommands(dest="command")
    for name, command in COMMANDS.items():
        subparser = _function_parser(command.load()) if built(name) else SectionedParser()
        subcommands.add_subcommand(name, subparser, help=command.help)
    subcommands.add_subcommand("plot", _plot_parser(), help=PLOT_HELP)
    subcommands.add_subcommand("list", _list_parser(), help=LIST_HELP)
    for name, (kind, help_text) in COMMAND_GROUPS.items():
        group = SectionedParser()
        subcommands.add_subcommand(name, group, help=help_text)  # jsonargparse: parents before children
        if not built(name):
            continue
        members = group.add_subcommands(dest="name")
        for member, entry in sorted(registry.registered(kind).items()):
            subparser = _function_parser(entry.load()) if built(name, member) else SectionedParser()
            members.add_subcommand(member, subparser, help=plain_text(signatures.describe(entry).summary))
    return parser


def _selected(argv: list[str]) -> tuple[list[str], Callable[..., object] | None]:
    """The subcommand path at the start of ``argv`` and the function it runs (if it names one)."""
    if argv and argv[0] in COMMANDS:
        return argv[:1], COMMANDS[argv[0]].load()
    if len(argv) > 1 and argv[0] in COMMAND_GROUPS:
        members = registry.registered(COMMAND_GROUPS[argv[0]][0])
        if argv[1] in members:
            return argv[:2], members[argv[1]].load()
    return [], None


def expand_argv(argv: list[str]) -> list[str]:
    """``argv`` with registered names in ``--key value`` / ``--key=value`` options expanded, and a
    bare ``bool`` option (``--quick``, followed by another option or nothing) made ``--quick=true``."""
    path, function = _selected(argv)
    if function is None:
        return argv
    out = list(path)
    rest = argv[len(path):]
    index = 0
    while index < len(rest):
        token = rest[index]
        if token.startswith("--") and "=" in token:
            key, _, value = token[2:].partition("=")
            out.append(f"--{key}={registry.expand_option(function, key, value)}")
        elif (token.startswith("--") and registry.is_flag(function, token[2:])
              and (index + 1 == len(rest) or rest[index + 1].startswith("--"))):
            out.append(f"{token}=true")
        elif token.startswith("--") and token != "--config" and index + 1 < len(rest):
            out += [token, registry.expand_option(function, token[2:], rest[index + 1])]
            index += 1
        else:
            out.append(token)
        index += 1
    return out


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) < 2000 else text[:2000] + " ..."


def _run(config: Namespace, instantiated: Namespace) -> None:
    """Run the parsed command."""
    command = config.command
    if command == "list":
        list_components(config.list.kind)
        return
    if command == "plot":
        from infuser.plots import plot_runs

        print(f"wrote {plot_runs(config.plot.runs, config.plot.output)}")
        return
    if command in COMMAND_GROUPS:
        name = config[command].name
        function = registry.resolve(COMMAND_GROUPS[command][0], name)
        arguments = instantiated[command][name]
    else:
        function = COMMANDS[command].load()
        arguments = instantiated[command]
    if isinstance(arguments, Namespace):
        arguments = arguments.as_dict() if hasattr(arguments, "as_dict") else vars(arguments)
    extra = {"_config": _resolved_config(function, config.fit)} if command == "fit" else {}
    function(**{k: v for k, v in dict(arguments).items() if k != "config"}, **extra)


def _resolved_config(function: Callable[..., object], parsed: Namespace) -> ResolvedConfig:
    """What ``--print_config`` would print for ``parsed``: the run writes it to ``run_dir/config.yaml``."""
    # Third argument: keep keys whose value is null (``skip_unset``, named ``skip_none`` before 4.53).
    return ResolvedConfig(_function_parser(function).dump(parsed, "parser_mode", False))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(argv)
        config = parser.parse_args(expand_argv(argv))
        instantiated = parser.instantiate(config)
    except (ArgumentError, ValueError, TypeError, KeyError, registry.RegistryError) as error:
        print(f"infuser: error: {_one_line(error)}", file=sys.stderr)
        return 2
    try:
        _run(config, instantiated)
    except _input_errors() as error:
        print(f"infuser: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
