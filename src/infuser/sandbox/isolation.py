"""Isolation levels: what this machine offers, and the command line that starts a program under each.

Three levels, tried in this order by ``isolation: auto``:

* ``bwrap``: bubblewrap (Debian package ``bubblewrap``), a well-kept tool made for exactly this:
  new user, mount, PID, network, IPC and UTS namespaces, a root made of read-only binds of the
  system directories and the interpreter's prefix, a fresh ``/proc``, ``/dev`` and ``/tmp``, the
  working directory at ``/sandbox``, every capability dropped, and the program killed with it;
* ``unshare``: util-linux's ``unshare`` makes the same namespaces, and the sandbox's own
  start-up code (:mod:`infuser.sandbox.child`) builds the same root inside them;
* ``plain``: no namespaces; only the resource limits, the dropped privileges and the syscall
  filter that every level has. The program then runs as the trainer's user in a temporary
  directory, and could read and write whatever that user can: the one thing this level does
  not isolate (the filter still stops new processes, other programs, sockets and signals to
  other processes).

Both namespace levels hide the trainer's files (``/work``, ``/root``, ``/home``, the host's
``/tmp``...), its processes and the network; :func:`readonly_paths` is all that is visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

Level = Literal["bwrap", "unshare", "plain"]
LEVELS: tuple[Level, ...] = ("bwrap", "unshare", "plain")
INSIDE = "/sandbox"
"""The working directory's path inside the namespace levels."""

_TOOLS = {"bwrap": "bwrap", "unshare": "unshare"}
_SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
_UNSHARE = ("--user", "--map-root-user", "--net", "--pid", "--mount", "--uts", "--ipc")
NOT_ISOLATED = {
    "bwrap": "",
    "unshare": "",
    "plain": "the program runs as the trainer's user and can read and write that user's files",
}


@dataclass(frozen=True)
class Interpreter:
    """The Python that runs programs, and the directories it needs to see.

    Attributes:
        executable: its path.
        prefixes: its ``base_prefix`` and ``base_exec_prefix`` (the standard library lives there), and
            ``prefix`` (a virtual environment's, for its site packages).
    """

    executable: str
    prefixes: tuple[str, ...]

    @classmethod
    def find(cls, python: str | None = None) -> Interpreter:
        """``python`` (a path or a command name), or the trainer's own base interpreter (not a
        virtual environment's wrapper: programs run with ``-I -S`` and need no site packages)."""
        if python is None:
            executable = getattr(sys, "_base_executable", None) or sys.executable
            prefixes = (sys.base_prefix, sys.base_exec_prefix)
        else:
            found = shutil.which(python)
            if found is None:
                raise ValueError(f"executor python: {python!r} is not an executable")
            asked = subprocess.run([found, "-I", "-c", "import sys; print(sys.base_prefix); "
                                    "print(sys.base_exec_prefix); print(sys.prefix)"],
                                   capture_output=True, text=True, timeout=60, env={})
            if asked.returncode != 0:
                raise ValueError(f"executor python: {found} does not run: {asked.stderr.strip()[-300:]}")
            # as given, not resolved: a virtual environment's python finds its pyvenv.cfg beside it
            executable, prefixes = os.path.abspath(found), tuple(asked.stdout.split("\n")[:3])
        return cls(executable, tuple(dict.fromkeys(os.path.realpath(p) for p in prefixes if p)))


def available(level: Level) -> bool:
    """Whether ``level``'s tool is installed (whether it works is for a probe run to say)."""
    return level == "plain" or shutil.which(_TOOLS[level]) is not None


def readonly_paths(interpreter: Interpreter, extra: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """What a namespace level shows read-only: the system directories, the dynamic loader's
    cache, the interpreter's prefixes and ``extra``; paths inside another listed path dropped. The
    second value is the system directories that are symbolic links (``/lib -> usr/lib``)."""
    symlinks: dict[str, str] = {}
    paths: list[str] = []
    for directory in _SYSTEM_DIRECTORIES:
        if os.path.islink(directory):
            symlinks[directory] = os.readlink(directory)
        elif os.path.isdir(directory):
            paths.append(directory)
    paths += [path for path in _SYSTEM_FILES if os.path.exists(path)]
    wanted = (*interpreter.prefixes, os.path.dirname(interpreter.executable), *extra)
    paths += [os.path.realpath(path) for path in wanted]
    unique = sorted(set(paths))
    kept = [p for p in unique if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in unique)]
    missing = [p for p in kept if not os.path.exists(p)]
    if missing:
        raise ValueError(f"executor: cannot show {missing} to programs: no such path")
    return kept, symlinks


def bootstrap(interpreter: Interpreter, source: str, site_packages: bool) -> list[str]:
    """The interpreter running the sandbox's start-up code (isolated mode: no ``PYTHON*``
    variables, no user site, the working directory not on the path; no site packages either
    unless asked)."""
    flags = ["-I"] if site_packages else ["-I", "-S"]
    return [interpreter.executable, *flags, "-c", source]


def command(level: Level, readonly: list[str], symlinks: dict[str, str], tmp_mb: int) -> list[str]:
    """The prefix that starts the start-up code under ``level`` (empty for ``plain``)."""
    if level == "plain":
        return []
    if level == "unshare":  # no --fork: the start-up code forks PID 1 itself (child.become_pid_one)
        return ["unshare", *_UNSHARE, "--"]
    # The program is PID 1 of its namespace (as with unshare): bwrap then exits only after it, and
    # the kernel has killed everything else in the namespace by then. No terminal to protect from
    # TIOCSTI either (the child's session has none), so no --new-session: killing the process group
    # kills the program too.
    arguments = ["bwrap", "--unshare-all", "--die-with-parent", "--as-pid-1", "--cap-drop", "ALL"]
    for path in readonly:
        arguments += ["--ro-bind", path, path]
    for link, destination in symlinks.items():
        arguments += ["--symlink", destination, link]
    size = str(tmp_mb << 20)
    arguments += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs",
                  INSIDE, "--chdir", INSIDE, "--"]
    return arguments
