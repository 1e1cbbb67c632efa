"""Calls made at the same instant from many threads, as concurrent requests arrive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def at_once(count: int, call: Callable[[], T]) -> list[T]:
    """`call()` from `count` threads released together; what each returned."""
    barrier = threading.Barrier(count)

    def after_barrier(_: int) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(after_barrier, range(count)))
