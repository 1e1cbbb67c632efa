"""Deadlines for model-server exchanges: a whole exchange, not each read, is bounded.

A socket timeout bounds each read, not the whole exchange; shutting the socket
down wakes the read that is blocked and ends the stream at once. One thread per
instance expires deadlines as they pass (a timer thread per request would cost a
thread start on every chat).
"""

from __future__ import annotations

import heapq
import socket
import threading
import time


class Deadline:
    """Ends a streamed response at the deadline by shutting its socket."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._sock: socket.socket | None = None
        self.expired = False

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        self._sock = sock
        _watchdog.watch(self)

    def expire(self) -> None:
        self.expired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        except OSError:
            pass

    def cancel(self) -> None:
        _watchdog.cancel(self)


class _Watchdog:
    """The thread that expires deadlines as they pass."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Deadline]] = []
        self._count = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._changed:
            self._count += 1
            heapq.heappush(self._due, (deadline.at, self._count, deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ollama-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

    def cancel(self, deadline: Deadline) -> None:
        with self._changed:
            self._due = [entry for entry in self._due if entry[2] is not deadline]
            heapq.heapify(self._due)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    heapq.heappop(self._due)[2].expire()
                self._changed.wait(self._due[0][0] - now if self._due else None)


_watchdog = _Watchdog()
