"""One plug-in mechanism for every swappable kind of component: Python entry points.

infuser's own built-ins are registered in ``pyproject.toml`` exactly like a third-party plug-in
would be, so there is a single way in: a package declares, say::

    [project.entry-points."infuser.influence"]
    my_estimator = "my_package.module:MyEstimator"

and once it is installed, ``influence: my_estimator`` selects it in YAML. A kind is an
entry-point group plus the base class its members subclass (benchmarks are typed functions and
have none).

jsonargparse knows import paths (and the class names of subclasses already imported), not
registered names, so :func:`expand` rewrites registered names, and the class names of registered
members, to import paths in the loaded configuration *before* jsonargparse sees it; parsing then
imports only the components a configuration names. It is driven by the type hints of the function
being configured: a value is rewritten only where the annotation is a kind's base class
(``influence: InfluenceEstimator``, ``solver.advantage: AdvantageEstimator``, inside dataclasses,
lists, dicts and the ``init_args`` of a member), never a plain string that happens to spell a
registered name elsewhere (``loss_type: dr_grpo``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import yaml


@dataclass(frozen=True)
class Kind:
    """A family of swappable components.

    Attributes:
        name: what users call it (``infuser list NAME``).
        group: the entry-point group.
        base: import path of the base class members subclass (resolved lazily, to keep imports
            light); ``None`` for kinds whose members are plain functions.
    """

    name: str
    group: str
    base: str | None

    def base_class(self) -> type | None:
        if self.base is None:
            return None
        module, _, attribute = self.base.rpartition(".")
        return getattr(import_module(module), attribute)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("influence", "infuser.influence", "infuser.influence.base.InfluenceEstimator"),
        Kind("advantage", "infuser.advantage", "infuser.advantages.AdvantageEstimator"),
        Kind("generator_reward", "infuser.generator_reward", "infuser.rl.generator_rewards.GeneratorReward"),
        Kind("documents", "infuser.documents", "infuser.data.documents.DocumentSource"),
        Kind("questions", "infuser.questions", "infuser.data.question_sets.QuestionSource"),
        Kind("task", "infuser.task", "infuser.tasks.base.Task"),
        Kind("benchmark", "infuser.benchmark", None),
        Kind("builtin_model", "infuser.builtin_models", None),
        Kind("executor", "infuser.executor", "infuser.sandbox.base.Executor"),
    )
}


class RegistryError(LookupError):
    """An unknown kind, an unknown name, or two plug-ins claiming the same name."""


def registered(kind: str) -> dict[str, EntryPoint]:
    """Installed members of ``kind`` by registered name; a name clash is an error."""
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind {kind!r}; known kinds: {', '.join(KINDS)}")
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=KINDS[kind].group):
        if entry.name in found and found[entry.name].value != entry.value:
            raise RegistryError(
                f"two {kind} plug-ins are registered as {entry.name!r}: {found[entry.name].value} "
                f"[{origin(found[entry.name])}] and {entry.value} [{origin(entry)}]; uninstall one of them "
                f"(installed {kind} names: {', '.join(sorted(found))})"
            )
        found[entry.name] = entry
    return found


def installed(kind: str) -> str:
    """``name (module:Class), ...`` of every installed member, for error messages."""
    return ", ".join(f"{name} ({entry.value})" for name, entry in sorted(registered(kind).items())) or "none"


def resolve(kind: str, name: str) -> Any:
    """The class (or function) registered as ``name`` for ``kind``; loading imports the plug-in."""
    members = registered(kind)
    if name not in members:
        raise RegistryError(f"no {kind} component named {name!r}; installed: {installed(kind)}")
    return members[name].load()


def origin(entry: EntryPoint) -> str:
    """Which installed distribution provides ``entry``."""
    return f"{entry.dist.name} {entry.dist.version}" if entry.dist is not None else "unknown distribution"


# -- registered names -> import paths, guided by type hints ----------------------------------------


def component_kind(hint: Any) -> Kind | None:
    """The kind whose base class ``hint`` (or one arm of a union) subclasses, if any."""
    arms = typing.get_args(hint) if _is_union(hint) else (hint,)
    for arm in arms:
        if not inspect.isclass(arm):
            continue
        for kind in KINDS.values():
            base = kind.base_class()
            if base is not None and issubclass(arm, base):
                return kind
    return None


def class_path(kind: Kind, name: str, key: str) -> str:
    """The import path for ``name`` given at config ``key``.

    Registered names and the class names of registered members are rewritten (from the entry
    point, without importing the member: parsing imports only what a configuration names), import
    paths and class names of other imported subclasses pass through, anything else is an error.
    """
    if "." in name:
        return name
    members = registered(kind.name)
    by_class_name = {entry.value.partition(":")[2]: entry for entry in members.values()}
    entry = members.get(name) or by_class_name.get(name)
    if entry is not None:
        module, _, attribute = entry.value.partition(":")
        return f"{module}.{attribute}"
    if name in _class_names(kind.base_class()):
        return name
    raise RegistryError(f"{key}: no {kind.name} component named {name!r}; installed: {installed(kind.name)}")


def expand(value: Any, hint: Any, key: str) -> Any:
    """``value`` (as loaded from YAML) with the registered names under ``hint`` made import paths.

    ``key`` is the dotted configuration key of ``value``, for error messages.
    """
    kind = component_kind(hint)
    if kind is not None:
        return _expand_member(kind, value, key)
    hint = _without_none(hint)
    origin_type = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _expand_fields(value, _hints(hint), key)
    if origin_type in (list, Sequence) and isinstance(value, list):
        item = (typing.get_args(hint) or (Any,))[0]
        return [expand(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin_type in (dict, Mapping) and isinstance(value, dict):
        item = typing.get_args(hint)[1] if len(typing.get_args(hint)) == 2 else Any
        return {k: expand(v, item, f"{key}.{k}") for k, v in value.items()}
    return value


def expand_arguments(function: Callable, config: dict[str, Any]) -> dict[str, Any]:
    """A whole configuration of ``function`` (e.g. a loaded ``--config`` file), expanded."""
    return _expand_fields(config, _hints(function), "")


def expand_option(function: Callable, key: str, raw: str) -> str:
    """The command-line value of ``--key`` for ``function``, expanded (unchanged if nothing to do).

    Handles ``--influence NAME``, ``--influence '{class_path: NAME, init_args: {...}}'``,
    ``--influence.class_path NAME``, ``--influence.help NAME`` and the same for keys inside
    dataclasses (``--solver.advantage NAME``).
    """
    parts = key.split(".")
    if parts[-1] in ("class_path", "help"):  # ``--influence.help tracin`` shows a member's options
        kind = component_kind(_hint_at(function, parts[:-1]))
        return class_path(kind, raw, key) if kind is not None else raw
    hint = _hint_at(function, parts)
    if hint is None:
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # not ours to report: jsonargparse will
    expanded = expand(value, hint, key)
    if expanded == value:
        return raw
    return expanded if isinstance(expanded, str) else json.dumps(expanded)


def _expand_member(kind: Kind, value: Any, key: str) -> Any:
    if isinstance(value, str):
        return class_path(kind, value, key)
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        path = class_path(kind, value["class_path"], f"{key}.class_path")
        expanded = {**value, "class_path": path}
        if isinstance(value.get("init_args"), dict) and "." in path:
            expanded["init_args"] = _expand_fields(value["init_args"], _hints(_import(path, key).__init__),
                                                   f"{key}.init_args")
        return expanded
    return value


def _expand_fields(values: dict[str, Any], hints: dict[str, Any], key: str) -> dict[str, Any]:
    prefix = f"{key}." if key else ""
    return {k: expand(v, hints[k], prefix + k) if k in hints else v for k, v in values.items()}


def is_flag(function: Callable, key: str) -> bool:
    """Whether ``--key`` of ``function`` is a ``bool``, which the command line accepts bare
    (``--quick`` for ``--quick true``)."""
    return _hint_at(function, key.split(".")) is bool


def _hint_at(function: Callable, parts: list[str]) -> Any:
    """The annotation of the dotted key ``parts`` below ``function``'s parameters (``None``: unknown)."""
    hint: Any = None
    hints = _hints(function)
    for part in parts:
        if part not in hints:
            return None
        hint = _without_none(hints[part])
        hints = _hints(hint) if dataclasses.is_dataclass(hint) else {}
    return hint


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):  # unresolvable forward references: nothing to expand there
        return {}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _without_none(hint: Any) -> Any:
    if _is_union(hint):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return hint


def _class_names(base: type | None) -> set[str]:
    names, stack = set(), [base] if base is not None else []
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def _import(path: str, key: str) -> Any:
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise RegistryError(f"{key}.class_path: cannot import {path}: {error}") from None
