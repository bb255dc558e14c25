"""Module-level functions the limits tests send to judge workers (workers import by name)."""

from __future__ import annotations

import os
import sys
import time


def add(a: int, b: int) -> int:
    return a + b


def sleep_then_return(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


def spin_forever() -> None:
    while True:
        pass


def boom(message: str) -> None:
    raise RuntimeError(message)


def allocate_mb(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def noisy(value: int) -> int:
    print("stray output that must not corrupt the protocol")
    sys.stdout.flush()
    return value


def pid() -> int:
    return os.getpid()


def die() -> None:
    os._exit(3)


def slow_step(*args: object) -> None:
    """Stands in for a judge step that never finishes."""
    time.sleep(60)


def extract_all(outputs: list[str], option_counts: list[int]) -> list[tuple[str | None, str, str | None, str]]:
    """Both extractors on every output: (letter, method, OlympiadBench answer, method)."""
    from infuser.answers.choice import extract_choice
    from infuser.eval.olympiad.extract import extract_olympiad_answer

    found = []
    for output, count in zip(outputs, option_counts):
        letter = extract_choice(output, [f"option {i}" for i in range(count)])
        answer = extract_olympiad_answer(output)
        found.append((letter.answer, letter.method, answer.answer, answer.method))
    return found
