"""Redis clients as InferGate configures them (bootstrap makes one per function instance).

Timeouts are short and there is one immediate retry (for a pooled
connection the server has dropped), not redis-py's default of three with
growing pauses: Redis only paces requests, breaks circuits and counts, and
an unreachable Redis must not hold up for seconds a chat that MongoDB can
still account for.

A Redis that timed out or refused a connection is taken for down for
OUTAGE_SECONDS: until then every command fails at once, without touching
the network. So a hung Redis costs one request of each instance one
timeout a second, not every request one timeout per command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

TIMEOUT_SECONDS = 0.5
OUTAGE_SECONDS = 1.0


class _Outage:
    """When the Redis behind one client was last found down, shared by its connections."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        if time.monotonic() < self._until:
            raise redis.ConnectionError("Redis was unreachable a moment ago")

    def begin(self) -> None:
        with self._lock:
            self._until = time.monotonic() + OUTAGE_SECONDS


def _failing_fast(base: type, outage: _Outage) -> type:
    """`base` (the connection class the URL calls for), refusing commands during an outage."""

    class FailFastConnection(base):  # type: ignore[misc, valid-type]
        def connect(self, *args, **kwargs):
            outage.check()
            return self._noting_outage(super().connect, (redis.ConnectionError, redis.TimeoutError), *args, **kwargs)

        def send_packed_command(self, *args, **kwargs):
            outage.check()
            return self._noting_outage(super().send_packed_command, (redis.TimeoutError,), *args, **kwargs)

        def read_response(self, *args, **kwargs):
            return self._noting_outage(super().read_response, (redis.TimeoutError,), *args, **kwargs)

        @staticmethod
        def _noting_outage(call, signs, *args, **kwargs):
            """`call`, taking Redis for down if it fails with one of `signs`: a connection that cannot
            be made, or a server that does not answer. A pooled connection the server dropped is
            not a sign: the one retry makes a new one."""
            try:
                return call(*args, **kwargs)
            except signs:
                outage.begin()
                raise

    return FailFastConnection


def _cluster_client(url: str, options: dict):
    """A RedisCluster, or, if no node answers now, a stand-in that makes one on a later call."""
    from redis.cluster import RedisCluster

    outage = _Outage()
    base = redis.SSLConnection if url.startswith("rediss://") else redis.Connection
    make = partial(RedisCluster.from_url, url, connection_class=_failing_fast(base, outage), **options)
    try:
        return make()
    except RedisClusterException:
        outage.begin()
        return _ClusterToBe(make, outage)


class _ClusterToBe:
    """A Redis Cluster that could not be reached when the instance started: a RedisCluster asks a
    node for the slot map as it is made. Until one answers, each call fails as a call to a down
    Redis does (ConnectionError, at once during an outage), so that the request is refused or let
    through as RATE_LIMIT_FAIL_OPEN says, and the instance is not lost."""

    def __init__(self, make: Callable[[], redis.Redis], outage: _Outage) -> None:
        self._make, self._outage, self._made = make, outage, None
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._client(), name)

    def register_script(self, script: str):
        """A script called through this stand-in: the stores register theirs as they are made."""
        from redis.commands.core import Script

        return Script(self, script)

    def get_encoder(self):
        """The encoder a Script hashes its text with: the clients' default."""
        return redis.connection.Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)

    def _client(self) -> redis.Redis:
        with self._lock:
            if self._made is None:
                self._outage.check()
                try:
                    self._made = self._make()
                except RedisClusterException as error:
                    self._outage.begin()
                    raise redis.ConnectionError(str(error)) from None
            return self._made


def names_a_cluster(url: str) -> bool:
    """Whether `url` is an ElastiCache endpoint that only a cluster client can use: a cluster-mode
    cluster's configuration endpoint (clustercfg.…) or a serverless cache (….serverless.…), which
    runs in cluster mode only. REDIS_CLUSTER=true says the same of any other cluster."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(".cache.amazonaws.com") and (host.startswith("clustercfg.") or ".serverless." in host)


def connect(url: str, *, cluster: bool = False) -> redis.Redis:
    """A client of the Redis at `url` (`rediss://` for TLS, a password or ElastiCache's auth
    token in it); with `cluster`, of the Redis Cluster that node belongs to, which the client
    maps itself (a connection per master). Either way an instance uses one connection at a time
    per server: Lambda serves one request at a time."""
    options = {"socket_connect_timeout": TIMEOUT_SECONDS, "socket_timeout": TIMEOUT_SECONDS,
               "health_check_interval": 30, "retry": Retry(NoBackoff(), 1)}
    if cluster:
        return _cluster_client(url, options)
    client = redis.Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = _failing_fast(pool.connection_class, _Outage())
    return client
