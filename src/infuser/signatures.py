"""What a registered component takes, read from its source file without importing it.

``infuser list`` shows every installed component with its parameters, and ``infuser bench``
lists benchmarks with a one-line summary. Importing the components to ask ``inspect`` would
import torch (seconds) and run every plug-in's import-time code just to print a table, so the
parameters and the summary are read from the member's syntax tree instead: a function's own
parameters, the ``__init__`` of a class or of the base class it inherits one from (followed
through the module's classes and its ``from ... import`` statements), or the fields of a
dataclass. A member that cannot be read that way (a compiled module, a base class made at run
time) is imported after all.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

# Bases that contribute no constructor parameters.
_PLAIN_BASES = {"object", "ABC", "Generic", "Protocol"}


@dataclass(frozen=True)
class Signature:
    """A component's constructor (or function) parameters as ``name=default`` / ``name``, and the
    first line of its docstring."""

    parameters: tuple[str, ...]
    summary: str

    def rendered(self) -> str:
        return f"({', '.join(self.parameters)})"


def describe(entry: EntryPoint) -> Signature:
    """The signature of the member ``entry`` names, from its source when possible."""
    module, _, attribute = entry.value.partition(":")
    return _from_source(module, attribute) or _from_import(entry)


def _from_source(module: str, name: str, depth: int = 0) -> Signature | None:
    tree = _syntax_tree(module)
    node = _top_level(tree, name) if tree is not None else None
    if node is None or depth > 8:
        return None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return Signature(_parameters(node.args), _summary(node))
    parameters = _constructor(module, tree, node, depth)
    return Signature(parameters, _summary(node)) if parameters is not None else None


def _constructor(module: str, tree: ast.Module, node: ast.ClassDef, depth: int) -> tuple[str, ...] | None:
    """The ``__init__`` parameters of class ``node`` (``None``: not decidable from source)."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return _parameters(item.args)
    if any(_name(decorator) == "dataclass" for decorator in node.decorator_list):
        if any(_name(base) not in _PLAIN_BASES for base in node.bases):
            return None  # inherited fields come first; leave that to dataclasses itself
        return tuple(_field(item) for item in node.body
                     if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                     and "ClassVar" not in ast.unparse(item.annotation))
    for base in node.bases:
        base_name = _name(base)
        if base_name in _PLAIN_BASES:
            continue
        local = _top_level(tree, base_name)
        if isinstance(local, ast.ClassDef):
            return _constructor(module, tree, local, depth + 1)
        source = _imported_from(tree, base_name, module)
        if source is None:
            return None
        inherited = _from_source(source[0], source[1], depth + 1)
        return inherited.parameters if inherited is not None else None
    return ()


def _syntax_tree(module: str) -> ast.Module | None:
    try:
        spec = importlib.util.find_spec(module)  # imports the parent packages, not the module
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _top_level(tree: ast.Module, name: str) -> ast.stmt | None:
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    return None


def _imported_from(tree: ast.Module, name: str, module: str) -> tuple[str, str] | None:
    """``(module, attribute)`` of a top-level ``from module import attribute [as name]``."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name("." * node.level + (node.module or ""), module) \
                        if node.level else node.module
                    return (source, alias.name) if source else None
    return None


def _name(node: ast.expr) -> str:
    """``Base`` for ``Base``, ``module.Base``, ``Base[T]`` and ``dataclass(frozen=True)``."""
    while isinstance(node, (ast.Subscript, ast.Call)):
        node = node.value if isinstance(node, ast.Subscript) else node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _parameters(arguments: ast.arguments) -> tuple[str, ...]:
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    pairs = [*zip(positional, defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
    return tuple(_shown(argument.arg, default) for argument, default in pairs if argument.arg not in ("self", "cls"))


def _field(node: ast.AnnAssign) -> str:
    value = node.value
    if isinstance(value, ast.Call) and _name(value.func) == "field":
        keywords = {k.arg: k.value for k in value.keywords}
        factory = keywords.get("default_factory")
        value = keywords.get("default") or (ast.Call(factory, [], []) if factory is not None else None)
    return _shown(node.target.id, value)


def _shown(name: str, default: ast.expr | None) -> str:
    return name if default is None else f"{name}={_short(ast.unparse(default))}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _summary(node: ast.AST) -> str:
    return summary(ast.get_docstring(node) or "")


def summary(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]


def _from_import(entry: EntryPoint) -> Signature:
    """The signature of the imported member (what :func:`describe` falls back to)."""
    member = entry.load()
    signature = inspect.signature(member.__init__ if inspect.isclass(member) else member)
    parameters = tuple(
        f"{p.name}={_short(_repr(p.default))}" if p.default is not inspect.Parameter.empty else p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )
    return Signature(parameters, summary(inspect.getdoc(member) or ""))


def _repr(value: object) -> str:
    """A default as a reader wants it in a listing: configuration objects by type name only."""
    if dataclasses.is_dataclass(value) or not isinstance(value, (str, int, float, bool, type(None), list, tuple)):
        return f"{type(value).__name__}(...)"
    return repr(value)
