"""What every server of the pool holds, as discovery last found it, shared by every function
instance: one instance's discovery serves all of them.

The shared copy (a HoldingsStore: Redis) is read at most once every LOCAL_SECONDS (a read a
chat would otherwise pay; what a server has loaded changes over minutes, not seconds); once it is
older than REFRESH_SECONDS, the instance that claims the refresh asks every server again, in
the background, while requests go on being routed by the copy they have. Only with no copy at
all (the pool's very first request) does a request wait for discovery, each server bounded by
DISCOVERY_SECONDS. Without the store, each instance discovers for itself.

A server that does not answer keeps the models it last served, marked unreachable: a model
whose only servers are down is unavailable (503), not unknown (400).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from infergate.domain.errors import ServiceUnavailable
from infergate.domain.pool import Holdings, Server

log = logging.getLogger(__name__)

LOCAL_SECONDS = 5.0
REFRESH_SECONDS = 10.0


class HoldingsStore(Protocol):
    """The shared copy; each method raises ServiceUnavailable if the store cannot be asked."""

    def read(self) -> tuple[dict[str, Holdings], float] | None:
        """The copy and its age in seconds, or None if there is none."""

    def claim_refresh(self, seconds: float) -> bool:
        """Whether this instance is the one to refresh the copy (for the next `seconds`)."""

    def write(self, holdings: Mapping[str, Holdings]) -> None: ...


class SharedCatalog:
    """The domain's Catalog (domain/pool.py)."""

    def __init__(self, servers: Sequence[Server], discover: Callable[[Server], Holdings | None],
                 store: HoldingsStore | None, *, local_seconds: float = LOCAL_SECONDS,
                 refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._servers, self._discover, self._store = tuple(servers), discover, store
        self._local_seconds, self._refresh_seconds, self._clock = local_seconds, refresh_seconds, clock
        self._lock = threading.Lock()
        self._kept: tuple[float, dict[str, Holdings]] | None = None  # when read, and what
        self._refreshing = threading.Lock()

    def holdings(self) -> Mapping[str, Holdings]:
        with self._lock:
            if self._kept is not None and self._clock() - self._kept[0] < self._local_seconds:
                return self._kept[1]
            holdings = self._read()
            self._kept = (self._clock(), holdings)
            return holdings

    def _read(self) -> dict[str, Holdings]:
        try:
            found = self._store.read() if self._store is not None else None
        except ServiceUnavailable:
            return self._on_our_own()
        if found is None or set(found[0]) != {server.name for server in self._servers}:
            return self.refresh(found[0] if found else {})
        holdings, age = found
        if age >= self._refresh_seconds:
            self._refresh_in_background(holdings)
        return holdings

    def _on_our_own(self) -> dict[str, Holdings]:
        """Without the shared copy, this instance's own, refreshed as the shared one would be."""
        kept = self._kept[1] if self._kept else {}
        if self._kept is not None and self._clock() - self._kept[0] < self._refresh_seconds and kept:
            return kept
        return self.refresh(kept, share=False)

    def refresh(self, previous: Mapping[str, Holdings], *, share: bool = True) -> dict[str, Holdings]:
        """Every server asked at once; one that does not answer keeps what it last served."""
        with ThreadPoolExecutor(max_workers=len(self._servers), thread_name_prefix="discovery") as pool:
            found = dict(zip((s.name for s in self._servers), pool.map(self._discover, self._servers), strict=True))
        holdings = {name: held if held is not None else _unreachable(previous.get(name))
                    for name, held in found.items()}
        if share and self._store is not None:
            try:
                self._store.write(holdings)
            except ServiceUnavailable:
                log.warning("the servers' holdings were not shared: the store is unavailable")
        return holdings

    def _refresh_in_background(self, previous: Mapping[str, Holdings]) -> None:
        if not self._refreshing.acquire(blocking=False):
            return  # this instance is refreshing already
        try:
            claimed = self._store is not None and self._store.claim_refresh(self._refresh_seconds)
        except ServiceUnavailable:
            claimed = False
        if not claimed:
            self._refreshing.release()
            return

        def run() -> None:
            try:
                self.refresh(previous)
            finally:
                self._refreshing.release()

        threading.Thread(target=run, name="discovery-refresh", daemon=True).start()


def _unreachable(previous: Holdings | None) -> Holdings:
    return Holdings(previous.models if previous else None, frozenset(), reachable=False)
