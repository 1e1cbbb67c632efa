"""The pool as operators see it: each server's health, breaker, models, load and last minute
(GET /admin/v1/servers, `infergate servers`, /metrics). Never its address: it may hold credentials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infergate.domain.pool import UNBOUNDED, Catalog, Holdings, PoolStore, Server, ServerState


@dataclass(frozen=True)
class ServerReport:
    name: str
    kind: str
    healthy: bool  # it answered its last discovery, and its breaker is not open
    breaker: str  # "closed", "open" or "half_open"
    models: tuple[str, ...]
    loaded: tuple[str, ...]
    slots: int | None  # None: the gateway does not hold it back
    in_flight: int
    requests_last_minute: int
    failures_last_minute: int
    p50_ms: int | None


class ServerReports:
    def __init__(self, servers: Sequence[Server], catalog: Catalog, store: PoolStore) -> None:
        self._servers, self._catalog, self._store = tuple(servers), catalog, store

    def all(self) -> list[ServerReport]:
        """Every server, in the order they are configured; RateLimiterUnavailable without Redis."""
        holdings = self._catalog.holdings()
        states = {state.name: state for state in self._store.states([server.name for server in self._servers])}
        return [_report(server, holdings.get(server.name), states[server.name]) for server in self._servers]

    def states(self) -> list[ServerState]:
        return self._store.states([server.name for server in self._servers])


def _report(server: Server, held: Holdings | None, state: ServerState) -> ServerReport:
    discovered = tuple(entry.name for entry in held.models) if held is not None and held.models is not None else ()
    return ServerReport(
        name=server.name, kind=server.kind, healthy=(held is None or held.reachable) and state.breaker != "open",
        breaker=state.breaker, models=server.models or discovered, loaded=tuple(sorted(held.loaded)) if held else (),
        slots=None if server.slots >= UNBOUNDED else server.slots, in_flight=state.in_flight,
        requests_last_minute=state.requests_last_minute, failures_last_minute=state.failures_last_minute,
        p50_ms=state.p50_ms)
