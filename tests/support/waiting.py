"""Waiting for what a test needs to see, with a generous deadline, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 60, interval: float = 0.05,
             what: str = "the condition") -> T:
    """The first truthy value of `condition()`, asked every `interval` seconds until `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come about in {timeout} s")
        time.sleep(interval)
