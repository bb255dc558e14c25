"""``run_dir/config.yaml``: the run's fully resolved configuration, and the check of a resumed run.

``infuser fit`` writes what ``--print_config`` prints (every key, defaults included, components as
``class_path``/``init_args``) into the run folder before any model loads, as LightningCLI and
LitGPT do, so a run folder says how it was made and ``infuser fit --config RUN/config.yaml``
repeats it.

A resumed run (``--ckpt_path``) compares its configuration with the saved file and *warns*, naming
each key that differs with both values. A warning rather than a refusal, as Lightning does when a
``Trainer`` resumes with other arguments: some changes are deliberate (more loggers, other
devices); the warning keeps the exactness of the resumed run checkable. Keys that name the resume
itself (:data:`RESUME_KEYS`) never count. The file is then rewritten with the configuration the
run continues under.

Torch-free: the command line writes the text, :func:`infuser.fit.fit` decides where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infuser.artifacts import atomic_path

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"

# Keys a resume changes by design: where it resumes from, the folder (a run copied elsewhere keeps
# its checkpoints) and the number of iterations (resuming a finished run with more extends it).
RESUME_KEYS = frozenset({"ckpt_path", "run_dir", "loop.iterations"})


@dataclass(frozen=True)
class KeyChange:
    """One configuration key whose value differs between the saved run and its resume."""

    key: str
    saved: Any
    now: Any

    def __str__(self) -> str:
        return f"{self.key} ({self.saved!r} -> {self.now!r})"


@dataclass(frozen=True)
class ResolvedConfig:
    """A run's configuration as YAML text, exactly as ``infuser fit --print_config`` prints it."""

    text: str

    def values(self) -> dict[str, Any]:
        """The configuration as dotted keys (``loop.iterations``) to leaf values."""
        return _flatten(yaml.safe_load(self.text) or {})

    def changes_since(self, saved: ResolvedConfig) -> list[KeyChange]:
        """Keys (other than :data:`RESUME_KEYS`) whose value differs from ``saved``, or that only one has."""
        before, after = saved.values(), self.values()
        missing = object()
        return [KeyChange(key, before.get(key), after.get(key)) for key in sorted(before.keys() | after.keys())
                if key not in RESUME_KEYS and before.get(key, missing) != after.get(key, missing)]

    def write(self, run_dir: Path) -> None:
        with atomic_path(run_dir / CONFIG_FILE) as temporary:
            temporary.write_text(self.text, encoding="utf-8")


def record(config: ResolvedConfig, run_dir: Path, resuming: bool) -> list[KeyChange]:
    """Write ``config`` to ``run_dir/config.yaml``; when ``resuming``, first warn about the keys
    that differ from the file already there (and return them)."""
    saved_path = run_dir / CONFIG_FILE
    changes: list[KeyChange] = []
    if resuming and saved_path.is_file():
        changes = config.changes_since(ResolvedConfig(saved_path.read_text(encoding="utf-8")))
        if changes:
            log.warning("the resumed run's configuration differs from %s in %d key(s): %s; the run continues "
                        "with the new values, and %s is rewritten with them", saved_path, len(changes),
                        "; ".join(map(str, changes)), CONFIG_FILE)
    config.write(run_dir)
    return changes


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists and scalars are leaves."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
