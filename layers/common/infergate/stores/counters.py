"""Request counting shared by every function instance (for /metrics): the request total, and
the Prometheus series (infergate/prometheus.py), each request's in one script call.

Both are kept per shard (stores/redis_keys.py), so that admission counts a request in the same
script, and in the same hash slot, as its limits; reading sums the shards, one pipeline of
SHARDS reads (a scrape's cost, not a request's)."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from infergate.domain.errors import ServiceUnavailable
from infergate.stores.redis_keys import shard, shards
from infergate.tracing import span

REQUESTS_TOTAL = "metrics:requests_total"  # under each shard
SERIES = "metrics:series"  # a hash: exposition series -> value
# KEYS: the series hash. ARGV: series, increment, series, increment, ...
_ADD = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
"""


class RedisCounters:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client, self._prefix = client, prefix
        self._add = client.register_script(_ADD)

    def count_request(self, subject: str = "") -> None:
        try:
            self._client.incr(shard(self._prefix, subject) + REQUESTS_TOTAL)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error

    def total_requests(self) -> int:
        return int(sum(float(value or 0) for value in self._each("get", REQUESTS_TOTAL)))

    def add(self, increments: Mapping[str, float], subject: str = "") -> None:
        """Adds one request's increments to the shared series: one command, one round trip."""
        try:
            with span("Redis", operation="metrics"):
                self._add(keys=[shard(self._prefix, subject) + SERIES],
                          args=[item for pair in increments.items() for item in pair])
        except redis.RedisError as error:
            raise ServiceUnavailable("Metrics are unavailable: Redis cannot be reached.") from error

    def series(self) -> dict[str, float]:
        summed: dict[str, float] = {}
        for stored in self._each("hgetall", SERIES):
            for name, value in stored.items():
                summed[name.decode()] = summed.get(name.decode(), 0.0) + float(value)
        return summed

    def _each(self, command: str, key: str) -> list:
        """`command` on `key` of every shard, in one pipeline (per master, on a cluster)."""
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for start in shards(self._prefix):
                    getattr(pipe, command)(start + key)
                return pipe.execute()
        except redis.RedisError as error:
            raise ServiceUnavailable("Metrics are unavailable: Redis cannot be reached.") from error
