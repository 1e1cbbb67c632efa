"""What one model server can do at once, as Ollama behaves: `slots` requests are served at a
time (OLLAMA_NUM_PARALLEL), up to `max_queue` more wait for one (OLLAMA_MAX_QUEUE) and any
beyond are refused with 503, and a model that is not loaded takes `load_seconds` to load on its
first request, after which GET /api/ps lists it.

It also counts, for tests and benchmarks, what the server itself saw: requests by model, how
many were served at once at the most, and how many a gateway sent while it was full.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Busy(Exception):
    """Every slot is taken and the queue is full: Ollama's 503."""


class Capacity:
    def __init__(self, *, slots: int = 0, max_queue: int = 512, loaded: set[str] | None = None,
                 load_seconds: float = 0.0) -> None:
        """`slots` 0: no limit. `loaded` None: every model is loaded from the start."""
        self.slots, self.max_queue, self.load_seconds = slots, max_queue, load_seconds
        self.loaded = loaded
        self._changed = threading.Condition()
        self._reset()

    def _reset(self) -> None:
        self.in_flight = self.max_in_flight = self.waiting = 0
        self.requests: Counter[str] = Counter()

    @contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """Holds one of the server's slots while the request is answered, after waiting for one
        (Busy if the queue is full); loads the model first if it is not loaded."""
        with self._changed:
            if self.slots and self.in_flight >= self.slots:
                if self.waiting >= self.max_queue:
                    raise Busy()
                self.waiting += 1
                try:
                    self._changed.wait_for(lambda: self.in_flight < self.slots)
                finally:
                    self.waiting -= 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requests[model] += 1
        try:
            self._load(model)
            yield
        finally:
            with self._changed:
                self.in_flight -= 1
                self._changed.notify()

    def _load(self, model: str) -> None:
        if self.loaded is None or model in self.loaded:
            return
        time.sleep(self.load_seconds)
        with self._changed:
            self.loaded.add(model)

    def is_loaded(self, model: str) -> bool:
        return self.loaded is None or model in self.loaded

    def stats(self) -> dict:
        with self._changed:
            return {"slots": self.slots, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                    "waiting": self.waiting, "requests": dict(self.requests)}

    def reset_stats(self) -> None:
        with self._changed:
            in_flight = self.in_flight
            self._reset()
            self.in_flight = self.max_in_flight = in_flight
