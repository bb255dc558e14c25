"""torch imported on first use, so that parsing a command line never imports it.

``infuser --help``, ``infuser list`` and ``infuser fit --print_config`` need the signatures of the
configuration dataclasses (:mod:`infuser.config`) and of the registered components' constructors,
nothing else; importing torch alone takes seconds. The modules that declare them bind torch
through :func:`lazy_import` and import what annotations alone need under this module's
:data:`TYPE_CHECKING`::

    from infuser.lazy import TYPE_CHECKING, lazy_import

    if TYPE_CHECKING:
        import torch
        from torch import Tensor
    else:
        torch = lazy_import("torch")

and use torch as usual: the first attribute looked up (``torch.zeros``) imports the real module.
``tests/test_cli_startup.py`` checks that parsing stays free of torch.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

TYPE_CHECKING = False
"""False at run time, like ``typing.TYPE_CHECKING`` (type checkers take any ``TYPE_CHECKING`` as
true). The modules above must not use ``typing``'s: to resolve type aliases, jsonargparse executes
the ``if typing.TYPE_CHECKING:`` blocks of every module whose signatures it reads, which would
import torch while a command line is parsed."""


class _LazyModule(ModuleType):
    """Stands in for a module until an attribute is looked up; then imports it and hands out its
    attributes (each one is copied here on first use, so later lookups cost what a module's do).

    Special names (``__args__``, ``__wrapped__``...) are looked up by code that inspects every value
    of a module, jsonargparse among it; they import nothing until the module is imported anyway.
    """

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__") and self.__name__ not in sys.modules:
            raise AttributeError(attribute)
        value = getattr(importlib.import_module(self.__name__), attribute)
        setattr(self, attribute, value)
        return value


def lazy_import(name: str) -> ModuleType:
    """The module ``name``: itself when it is already imported, else a stand-in that imports it on
    first use. Nothing is registered in ``sys.modules`` until then."""
    return sys.modules.get(name) or _LazyModule(name)
