"""Whether this instance can serve: each dependency asked at once, each within its own
deadline, so that a hung one costs the check its deadline, never more. An instance asks
at most once every FRESH_SECONDS and answers in between from its last check, so that an
open readiness route cannot be used to load the stores.

Every model server of the pool is asked; the instance can serve while one of them answers
(the `model_server` check), and each server's own check is reported beside.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Late
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from pymongo import MongoClient

    from infergate.llm.connections import ModelServerConnections

# A probe returns when its dependency answered, and raises when it did not.
Probe = Callable[[], None]
FRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    ok: bool
    latency_ms: float
    error: str | None = None  # what went wrong, by kind: never a message that may hold an address


SERVER = "server:"  # a model server's probe is named so, then the server's name


@dataclass(frozen=True)
class Readiness:
    checks: Mapping[str, Check]  # the stores', and `model_server`: whether any server answered
    servers: Mapping[str, Check]  # each model server's, by name

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())


def probes(mongo: Callable[[], MongoClient], redis_client: Callable[[], redis.Redis],
           servers: Callable[[], Mapping[str, ModelServerConnections]], *, seconds: float = 2.0) -> dict[str, Probe]:
    """One probe per dependency (MongoDB, Redis, each model server), each bounded by `seconds`; each
    client is taken when its probe runs, so that a client that cannot be made fails its probe alone."""
    def mongodb() -> None:
        import pymongo

        with pymongo.timeout(seconds):
            mongo().admin.command("ping")

    found = {"mongodb": mongodb, "redis": lambda: redis_client().ping()}
    for name, connections in servers().items():
        found[SERVER + name] = lambda connections=connections: connections.ping(timeout=seconds)
    return found


def check(probes: Mapping[str, Probe], *, timeout: float) -> Readiness:
    # Not a `with` block: its exit would wait for a hung probe.
    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="readiness")
    try:
        started = time.monotonic()
        pending = {name: pool.submit(_timed, probe) for name, probe in probes.items()}
        checks = {}
        for name, future in pending.items():
            try:
                checks[name] = future.result(timeout=max(0.0, started + timeout - time.monotonic()))
            except Late:
                checks[name] = Check(False, round(timeout * 1000, 1), "timeout")
        servers = {name.removeprefix(SERVER): checks.pop(name) for name in list(checks) if name.startswith(SERVER)}
        if servers:
            checks["model_server"] = _any_of(list(servers.values()))
        return Readiness(checks, servers)
    finally:
        pool.shutdown(wait=False)


def _timed(probe: Probe) -> Check:
    started = time.monotonic()
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure means not ready; its kind is reported
        return Check(False, _since(started), type(error).__name__)
    return Check(True, _since(started))


def _any_of(servers: list[Check]) -> Check:
    """Ok with the quickest server that answered; else failing as the first server did."""
    answered = [check for check in servers if check.ok]
    if answered:
        return min(answered, key=lambda check: check.latency_ms)
    return servers[0]


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


class ReadinessCheck:
    """`check` of the probes, at most once every `fresh_for` seconds."""

    def __init__(self, probes: Mapping[str, Probe], *, timeout: float, fresh_for: float = FRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probes, self._timeout, self._fresh_for, self._clock = probes, timeout, fresh_for, clock
        self._last: tuple[float, Readiness] | None = None

    def latest(self) -> Readiness:
        now = self._clock()
        if self._last is None or now - self._last[0] >= self._fresh_for:
            self._last = (now, check(self._probes, timeout=self._timeout))
        return self._last[1]
