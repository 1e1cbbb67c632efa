"""Real backends for tests, each on a free port, stopped when the session ends.

MongoDB: a secantusdb server, unless TEST_MONGODB_URI names one to use
instead (any MongoDB replica set; each test then gets its own database,
dropped afterwards). Redis: always a redis-server of the suite's own, so a
flush never touches someone else's data; and a Redis Cluster of three masters
(redis-server's own cluster mode) for the suites that run against both. The model server: the
Ollama-compatible server in its deterministic mode.

TEST_REDIS_CLUSTER=true makes the suite's Redis a cluster of three masters instead: every test
and every gateway the suite starts then runs on it (`make test-cluster`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from devkit import backends

from tests.support.waiting import wait_for


@contextmanager
def mongo_url() -> Iterator[str]:
    external = os.environ.get("TEST_MONGODB_URI")
    if external:
        yield external
        return
    service = backends.start_mongo(":memory:")
    try:
        yield service.url
    finally:
        service.stop()


def redis_is_cluster() -> bool:
    """Whether the suite's Redis is a cluster (TEST_REDIS_CLUSTER)."""
    return os.environ.get("TEST_REDIS_CLUSTER", "").lower() in {"1", "true", "yes"}


@contextmanager
def redis_url() -> Iterator[str]:
    if redis_is_cluster():
        with tempfile.TemporaryDirectory(prefix="redis-cluster-") as folder, redis_cluster_url(Path(folder)) as url:
            yield url
        return
    service = backends.start_redis()
    try:
        yield service.url
    finally:
        service.stop()


@contextmanager
def redis_cluster_url(folder: Path) -> Iterator[str]:
    cluster = backends.start_redis_cluster(folder)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@dataclass(frozen=True)
class RedisTarget:
    """A Redis of the suite's own, a single server or a cluster, as REDIS_URL and REDIS_CLUSTER name it."""

    url: str
    cluster: bool

    def client(self) -> redis.Redis:
        """A client of it, configured as InferGate's are; flushing it touches nobody else's data."""
        from infergate.stores.redis_client import connect

        return connect(self.url, cluster=self.cluster)


def redis_client_of(url: str) -> redis.Redis:
    """A client of the suite's Redis at `url`, a cluster's if the suite's Redis is one."""
    return RedisTarget(url, cluster=redis_is_cluster()).client()


@contextmanager
def model_server(*extra: str, models: tuple[str, ...] = ("smollm2:135m", "tiny:latest")) -> Iterator[str]:
    service = backends.start_model_server(engine="deterministic", models=list(models), extra=list(extra))
    try:
        yield service.url
    finally:
        service.stop()


def redis_time_ms(client) -> int:
    """Redis's own clock, by which its limits and the circuit breaker decide."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def wait_for_redis_time(client, at_ms: int, *, timeout: float = 60) -> None:
    """Returns once Redis's own clock reads `at_ms` or later."""
    wait_for(lambda: redis_time_ms(client) >= at_ms, timeout=timeout, interval=0.01,
             what=f"Redis's clock reaching {at_ms}")


def wait_until_the_model_is_asked(model_url: str, *, timeout: float = 60) -> None:
    """Returns once the model server has received a chat (it records what arrives)."""
    wait_for(lambda: any(seen["path"] == "/api/chat" for seen in httpx.get(f"{model_url}/_devkit/requests").json()),
             timeout=timeout, what="a chat reaching the model server")
