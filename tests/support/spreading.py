"""Answers asked for while a change spreads across instances."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def answers_asked_after(seconds: float, ask: Callable[[], T], *, at_least: int, linger: float = 0.5,
                        every: float = 0.02) -> list[T]:
    """Traffic goes on from the moment of the call: `ask()` over and over, at most once every
    `every` seconds (a steady client, not a flood that would meet the caller's own rate
    limit), until `seconds + linger` have passed and at least `at_least` answers were asked
    for `seconds` or more after the call; those answers. Whatever was answered from memory
    before, these must hold the change."""
    changed = time.monotonic()
    later: list[T] = []
    while time.monotonic() < changed + seconds + linger or len(later) < at_least:
        asked = time.monotonic() - changed
        answer = ask()
        if asked >= seconds:
            later.append(answer)
        time.sleep(max(0.0, changed + asked + every - time.monotonic()))
    return later
