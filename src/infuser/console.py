"""What a run prints: a progress bar on a terminal, one plain line per stage in a log file.

A tqdm bar redraws itself with carriage returns; written into a file (``infuser fit ... > log
2>&1``, a cluster job's output) every redraw becomes part of one enormous line. :func:`progress`
therefore gives a bar only when its stream is a terminal and otherwise a :class:`LineProgress`,
which has the few methods of tqdm the loop uses and writes a timestamped line per stage.

:func:`quiet_libraries` silences what the libraries print that says nothing to a user of infuser:
transformers' per-tensor "Loading weights" and "Writing model shards" bars (download bars of the
Hugging Face Hub stay), and the second copy of every Lightning message (the ``lightning`` package
adds its own console handler even when logging is configured, so with the CLI's every message
appeared twice).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import IO, Protocol


class ProgressDisplay(Protocol):
    """What the loop asks of a progress display (tqdm's names, so a tqdm bar is one)."""

    def __iter__(self) -> Iterator[int]: ...

    def set_postfix_str(self, s: str) -> None: ...

    def close(self) -> None: ...


class LineProgress:
    """tqdm's ``__iter__``, ``set_postfix_str`` and ``close`` as timestamped lines, for a stream that
    is not a terminal: a line when a stage starts and one when an iteration ends."""

    def __init__(self, iterable: Iterable[int], desc: str, total: int, initial: int = 0, disable: bool = False,
                 file: IO[str] | None = None) -> None:
        self.iterable, self.desc, self.total, self.disable = iterable, desc, total, disable
        self.file = file
        self._iteration = initial
        self._started = time.perf_counter()

    def __iter__(self) -> Iterator[int]:
        for item in self.iterable:
            self._iteration = item
            self._started = time.perf_counter()
            yield item
            self._write(f"iteration {item}/{self.total} done in {time.perf_counter() - self._started:.1f} s")

    def set_postfix_str(self, s: str) -> None:
        """Announce stage ``s`` of the iteration in progress."""
        self._write(f"iteration {self._iteration}/{self.total}: {s}")

    def close(self) -> None:
        """Nothing to tear down: every line is complete when written."""

    def _write(self, message: str) -> None:
        if not self.disable:
            stream = self.file if self.file is not None else sys.stderr
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.desc}: {message}", file=stream, flush=True)


def progress(iterable: Iterable[int], desc: str, total: int, initial: int = 0, disable: bool = False,
             unit: str = "it", file: IO[str] | None = None) -> ProgressDisplay:
    """A tqdm bar over ``iterable`` when ``file`` (default: stderr) is a terminal, else a
    :class:`LineProgress`."""
    stream = file if file is not None else sys.stderr
    if stream.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=disable, file=stream)
    return LineProgress(iterable, desc, total, initial, disable, stream)


def quiet_libraries() -> None:
    """Silence library output that says nothing to a user of infuser (see the module docstring)."""
    import lightning
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    package = logging.getLogger(lightning.__name__)
    if logging.getLogger().handlers:  # logging is configured: let the root's handlers print it once
        for handler in [h for h in package.handlers if type(h) is logging.StreamHandler]:
            package.removeHandler(handler)


def hide_rebuilt_log_warning() -> None:
    """On resume, Lightning warns that the earlier ``logs/metrics.csv`` "will be deleted"; infuser
    rebuilds that file from the checkpoint's history (:meth:`~infuser.loop.InfuserLoop.fit`), so
    nothing is lost and the warning would only alarm."""
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
