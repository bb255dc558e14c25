"""The ``infuser`` command: ``fit``, ``list``, and the other subcommands.

Built on jsonargparse directly rather than LightningCLI: LightningCLI is organised around a
``Trainer`` and a single LightningModule, while infuser has two modules, a custom loop and plain
typed functions as entry points. jsonargparse gives the same experience (YAML with
``class_path``/``init_args``, dotted overrides such as ``--loop.iterations 3``, ``--print_config``)
straight from the type hints of :func:`infuser.fit.fit`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from infuser import registry

Command = Callable[..., object]


def _commands() -> dict[str, tuple[Command, str]]:
    from infuser.fit import fit

    return {
        "fit": (fit, "Co-train a Generator and a Solver (the INFUSER loop)."),
        "list": (list_components, "List installed components of one kind, with their parameters."),
    }


def list_components(kind: str = "influence") -> None:
    """Print the installed components of ``kind``: registered name, origin and parameters.

    Args:
        kind: one of the component kinds (influence, advantage, documents, questions).
    """
    import inspect

    for name, entry in sorted(registry.registered(kind).items()):
        cls = entry.load()
        dist = entry.dist.name if entry.dist is not None else "?"
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        rendered = ", ".join(
            f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name for p in params
        )
        print(f"{name:<20} {entry.value:<60} [{dist}]  ({rendered})")


def build_parser() -> ArgumentParser:
    # Import every registered component so YAML may name them by class name alone.
    for kind in registry.KINDS:
        registry.import_all(kind)
    parser = ArgumentParser(prog="infuser", description="Influence-guided self-evolution of language models.",
                            exit_on_error=False)
    subcommands = parser.add_subcommands(dest="command")
    for name, (function, help_text) in _commands().items():
        sub = ArgumentParser(exit_on_error=False)
        sub.add_argument("--config", action=ActionConfigFile, help="a YAML file of arguments")
        sub.add_function_arguments(function, fail_untyped=False)
        subcommands.add_subcommand(name, sub, help=help_text)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) < 2000 else text[:2000] + " ..."


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = parser.parse_args(argv)
        command = config.command
        instantiated = parser.instantiate_classes(config)
    except (ValueError, TypeError, KeyError) as error:  # jsonargparse's ArgumentError is a ValueError
        print(f"infuser: error: {_one_line(error)}", file=sys.stderr)
        return 2
    function = _commands()[command][0]
    arguments = instantiated[command]
    if isinstance(arguments, Namespace):
        arguments = arguments.as_dict() if hasattr(arguments, "as_dict") else vars(arguments)
    arguments = {k: v for k, v in dict(arguments).items() if k != "config"}
    function(**arguments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
