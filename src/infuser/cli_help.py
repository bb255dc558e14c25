"""Help text that reads as plain text in a terminal.

The options of ``infuser fit`` are documented once, in the docstrings of the configuration
dataclasses and components, which are written in reStructuredText for the API documentation.
jsonargparse copies them into ``--help`` as they are; :func:`plain_text` drops the markup
(````name```` becomes ``name``, ``:class:`~infuser.loop.InfuserLoop``` becomes ``InfuserLoop``),
and :class:`PlainHelpFormatter` applies it to every help line, section title and description.
:class:`SectionedParser` titles each section by its configuration key (``solver.model: Where a
role's model comes from ...``), so a reader of the long ``fit --help`` knows where they are.
"""

from __future__ import annotations

import re
from typing import Any

from jsonargparse import ArgumentParser, DefaultHelpFormatter

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText inline markup (a role with ``~`` keeps its last name, as
    Sphinx shows it)."""
    text = _ROLE.sub(lambda match: match[2].rsplit(".", 1)[-1] if match[1] else match[2], text)
    return _LITERAL.sub(r"\1", text)


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help (types and defaults included), as plain text."""

    def _get_help_string(self, action: Any) -> str:
        return plain_text(super()._get_help_string(action))

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def start_section(self, heading: str | None) -> None:
        super().start_section(plain_text(heading) if heading else heading)


class SectionedParser(ArgumentParser):
    """An ``ArgumentParser`` with plain help whose groups of nested options are titled by their key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)

    def add_function_arguments(self, *args: Any, **kwargs: Any) -> list[str]:
        added = super().add_function_arguments(*args, **kwargs)
        for name, group in self.groups.items():  # jsonargparse names each group by its key
            if group.title and not group.title.startswith(f"{name}:"):
                group.title = f"{name}: {group.title}"
        return added
