"""One plug-in mechanism for every swappable kind of component: Python entry points.

infuser's own built-ins are registered in ``pyproject.toml`` exactly like a third-party plug-in
would be, so there is a single way in. A kind is an entry-point group plus the base class its
members must subclass; YAML may name a member by its registered name (``optimizer_aware``), by
its class name, or by its full import path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points


@dataclass(frozen=True)
class Kind:
    """A family of swappable components."""

    name: str
    group: str
    base: str  # import path of the base class, resolved lazily to keep imports light

    def base_class(self) -> type:
        module, _, attribute = self.base.rpartition(".")
        return getattr(import_module(module), attribute)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("influence", "infuser.influence", "infuser.influence.base.InfluenceEstimator"),
        Kind("advantage", "infuser.advantage", "infuser.rl.advantages.AdvantageEstimator"),
        Kind("documents", "infuser.documents", "infuser.data.documents.DocumentSource"),
        Kind("questions", "infuser.questions", "infuser.data.question_sets.QuestionSource"),
    )
}


class RegistryError(LookupError):
    """An unknown kind, an unknown name, or two plug-ins claiming the same name."""


def registered(kind: str) -> dict[str, EntryPoint]:
    """Installed members of ``kind`` by registered name; a name clash is an error."""
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=KINDS[kind].group):
        if entry.name in found and found[entry.name].value != entry.value:
            raise RegistryError(
                f"two {kind} plug-ins are registered as {entry.name!r}: {found[entry.name].value} "
                f"and {entry.value}; uninstall one of them"
            )
        found[entry.name] = entry
    return found


def resolve(kind: str, name: str) -> type:
    """The class registered as ``name`` for ``kind`` (loading it imports the plug-in)."""
    members = registered(kind)
    if name not in members:
        listing = ", ".join(sorted(members)) or "none"
        raise RegistryError(f"no {kind} component named {name!r}; installed: {listing}")
    return members[name].load()


def class_path(kind: str, name: str) -> str:
    """The ``module.Class`` import path of a registered name, for jsonargparse's ``class_path``."""
    cls = resolve(kind, name)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_all(kind: str) -> list[type]:
    """Import every installed member, so jsonargparse can resolve them by class name."""
    return [entry.load() for entry in registered(kind).values()]
