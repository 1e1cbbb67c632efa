"""Whether this instance can serve: each dependency asked at once, each within its own
deadline, so that a hung one costs the check its deadline, never more. An instance asks
at most once every FRESH_SECONDS and answers in between from its last check, so that an
open readiness route cannot be used to load the stores."""

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


@dataclass(frozen=True)
class Readiness:
    checks: Mapping[str, Check]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())


def probes(mongo: Callable[[], MongoClient], redis_client: Callable[[], redis.Redis],
           model_server: Callable[[], ModelServerConnections], *, seconds: float = 2.0) -> dict[str, Probe]:
    """One probe per dependency (MongoDB, Redis, the model server), each bounded by `seconds`; each
    client is taken when its probe runs, so that a client that cannot be made fails its probe alone."""
    def mongodb() -> None:
        import pymongo

        with pymongo.timeout(seconds):
            mongo().admin.command("ping")

    return {"mongodb": mongodb, "redis": lambda: redis_client().ping(),
            "model_server": lambda: model_server().ping(timeout=seconds)}


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
        return Readiness(checks)
    finally:
        pool.shutdown(wait=False)


def _timed(probe: Probe) -> Check:
    started = time.monotonic()
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure means not ready; its kind is reported
        return Check(False, _since(started), type(error).__name__)
    return Check(True, _since(started))


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
