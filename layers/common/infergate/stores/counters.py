"""Request counting shared by every function instance (for /metrics): the request total, and
the Prometheus series (infergate/prometheus.py), each request's in one pipelined write."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from infergate.errors import ServiceUnavailable

REQUESTS_TOTAL = "metrics:requests_total"  # under the key prefix
SERIES = "metrics:series"  # a hash: exposition series -> value


class RedisCounters:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._key = prefix + REQUESTS_TOTAL
        self._series = prefix + SERIES

    def count_request(self) -> None:
        self._client.incr(self._key)

    def total_requests(self) -> int:
        try:
            return int(self._client.get(self._key) or 0)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error

    def add(self, increments: Mapping[str, float]) -> None:
        """Adds one request's increments to the shared series, in one round trip."""
        pipeline = self._client.pipeline(transaction=False)
        for name, value in increments.items():
            if float(value).is_integer():
                pipeline.hincrby(self._series, name, int(value))
            else:
                pipeline.hincrbyfloat(self._series, name, value)
        pipeline.execute()

    def series(self) -> dict[str, float]:
        try:
            stored = self._client.hgetall(self._series)
        except redis.RedisError as error:
            raise ServiceUnavailable("Metrics are unavailable: Redis cannot be reached.") from error
        return {name.decode(): float(value) for name, value in stored.items()}
