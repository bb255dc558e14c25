"""The ``infuser`` command: ``fit``, ``eval``, ``list`` and ``bench``.

Built on jsonargparse directly rather than LightningCLI: LightningCLI is organised around a
``Trainer`` and a single LightningModule, while infuser has two modules, a custom loop and plain
typed functions as entry points. jsonargparse gives the same experience (YAML with
``class_path``/``init_args``, dotted overrides such as ``--loop.iterations 3``, ``--print_config``)
straight from the type hints of :func:`infuser.fit.fit`.

Components may be named by their registered entry-point name (``influence: tracin``) as well as
by class name or import path: registered names in ``--config`` files and on the command line are
rewritten to import paths (:func:`infuser.registry.expand`) before jsonargparse parses them.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import sys
from argparse import ArgumentError
from collections.abc import Callable
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from infuser import registry

Command = Callable[..., object]

# Subcommands whose own subcommands are the installed members of a registry kind:
# ``infuser bench influence`` runs the benchmark registered as ``influence``.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "bench": ("benchmark", "Run a registered benchmark, e.g. `infuser bench influence --config FILE`."),
}


def _commands() -> dict[str, tuple[Command, str]]:
    from infuser.eval.run import evaluate
    from infuser.eval.target_set import build_target_set
    from infuser.fit import fit

    return {
        "fit": (fit, "Co-train a Generator and a Solver (the INFUSER loop)."),
        "eval": (evaluate, "Score a model, or saved predictions, on OlympiadBench and SuperGPQA."),
        "target-set": (build_target_set, "Write a seeded SuperGPQA subset as a target set (JSONL + manifest)."),
        "list": (list_components, "List installed components of one kind, with their parameters."),
    }


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "your input is wrong" (they name the file, line or key): one line, no traceback."""
    from infuser.artifacts import CheckpointError
    from infuser.data.documents import CorpusError
    from infuser.data.jsonl import JSONLineError
    from infuser.data.question_sets import QuestionSetError
    from infuser.eval.data import DatasetError, RowError
    from infuser.fit import ConfigurationError

    return (registry.RegistryError, ConfigurationError, CorpusError, QuestionSetError, JSONLineError,
            CheckpointError, DatasetError, RowError)


def list_components(kind: str) -> None:
    """Print the installed components of ``kind``: registered name, origin and parameters.

    Args:
        kind: one of the component kinds (influence, advantage, documents, questions, benchmark).
    """
    members = registry.registered(kind)
    print(f"{kind} components (entry-point group {registry.KINDS[kind].group}):")
    width = max((len(entry.value) for entry in members.values()), default=0)
    for name, entry in sorted(members.items()):
        member = entry.load()
        signature = inspect.signature(member.__init__ if inspect.isclass(member) else member)
        rendered = ", ".join(
            f"{p.name}={_short(p.default)}" if p.default is not inspect.Parameter.empty else p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        print(f"  {name:<18} {entry.value:<{width}}  [{registry.origin(entry)}]\n  {'':<18} ({rendered})")


def _short(value: object) -> str:
    """A default as a reader wants it in a listing: configuration objects by type name only."""
    if dataclasses.is_dataclass(value) or not isinstance(value, (str, int, float, bool, type(None), list, tuple)):
        return f"{type(value).__name__}(...)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _config_file_action(function: Command) -> type[ActionConfigFile]:
    """``--config`` for ``function``: registered names in the file are expanded before parsing."""

    class ConfigFile(ActionConfigFile):
        def __call__(self, parser, cfg, values, option_string=None):
            path = Path(values)
            try:
                loaded = yaml.safe_load(path.read_text() if path.is_file() else values)
            except (OSError, yaml.YAMLError):
                loaded = None  # jsonargparse reports unreadable files and bad YAML itself
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


def _function_parser(function: Command) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=_config_file_action(function), help="a YAML file of arguments")
    # `infuser list influence`: the one argument of `list` is positional, everything else an option.
    parser.add_function_arguments(function, fail_untyped=False, as_positional=function is list_components)
    return parser


def build_parser() -> ArgumentParser:
    # A ``class_path`` inside an untyped value (a benchmark arm's overrides) stays data: a
    # configuration file can instantiate only what a typed argument asks for.
    set_parsing_settings(instantiate_subclass_spec_in_any=False)
    # Import every registered component so YAML may name them by class name alone.
    for kind in registry.KINDS:
        registry.import_all(kind)
    parser = ArgumentParser(prog="infuser", description="Influence-guided self-evolution of language models.",
                            exit_on_error=False)
    subcommands = parser.add_subcommands(dest="command")
    for name, (function, help_text) in _commands().items():
        subcommands.add_subcommand(name, _function_parser(function), help=help_text)
    for name, (kind, help_text) in COMMAND_GROUPS.items():
        group = ArgumentParser(exit_on_error=False)
        subcommands.add_subcommand(name, group, help=help_text)  # jsonargparse: parents before children
        members = group.add_subcommands(dest="name")
        for member, entry in sorted(registry.registered(kind).items()):
            function = entry.load()
            summary = (inspect.getdoc(function) or "").split("\n")[0]
            members.add_subcommand(member, _function_parser(function), help=summary)
    return parser


def _selected(argv: list[str]) -> tuple[list[str], Command | None]:
    """The subcommand path at the start of ``argv`` and the function it runs (if it names one)."""
    if argv and argv[0] in _commands():
        return argv[:1], _commands()[argv[0]][0]
    if len(argv) > 1 and argv[0] in COMMAND_GROUPS:
        members = registry.registered(COMMAND_GROUPS[argv[0]][0])
        if argv[1] in members:
            return argv[:2], members[argv[1]].load()
    return [], None


def expand_argv(argv: list[str]) -> list[str]:
    """``argv`` with registered names in ``--key value`` / ``--key=value`` options expanded."""
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        config = parser.parse_args(expand_argv(argv))
        instantiated = parser.instantiate_classes(config)
    except (ArgumentError, ValueError, TypeError, KeyError, registry.RegistryError) as error:
        print(f"infuser: error: {_one_line(error)}", file=sys.stderr)
        return 2
    command = config.command
    if command in COMMAND_GROUPS:
        name = config[command].name
        function = registry.resolve(COMMAND_GROUPS[command][0], name)
        arguments = instantiated[command][name]
    else:
        function = _commands()[command][0]
        arguments = instantiated[command]
    if isinstance(arguments, Namespace):
        arguments = arguments.as_dict() if hasattr(arguments, "as_dict") else vars(arguments)
    arguments = {k: v for k, v in dict(arguments).items() if k != "config"}
    try:
        function(**arguments)
    except _input_errors() as error:
        print(f"infuser: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
