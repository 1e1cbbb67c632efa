"""Request counting shared by every function instance (for /metrics): the request total, and
the Prometheus series (infergate/prometheus.py), each request's in one script call."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from infergate.domain.errors import ServiceUnavailable
from infergate.tracing import span

REQUESTS_TOTAL = "metrics:requests_total"  # under the key prefix
SERIES = "metrics:series"  # a hash: exposition series -> value
# KEYS: the series hash. ARGV: series, increment, series, increment, ...
_ADD = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
"""


class RedisCounters:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._key = prefix + REQUESTS_TOTAL
        self._series = prefix + SERIES
        self._add = client.register_script(_ADD)

    def count_request(self) -> None:
        try:
            self._client.incr(self._key)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error

    def total_requests(self) -> int:
        try:
            return int(self._client.get(self._key) or 0)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error

    def add(self, increments: Mapping[str, float]) -> None:
        """Adds one request's increments to the shared series: one command, one round trip."""
        try:
            with span("Redis", operation="metrics"):
                self._add(keys=[self._series], args=[item for pair in increments.items() for item in pair])
        except redis.RedisError as error:
            raise ServiceUnavailable("Metrics are unavailable: Redis cannot be reached.") from error

    def series(self) -> dict[str, float]:
        try:
            stored = self._client.hgetall(self._series)
        except redis.RedisError as error:
            raise ServiceUnavailable("Metrics are unavailable: Redis cannot be reached.") from error
        return {name.decode(): float(value) for name, value in stored.items()}
