"""Request counting shared by every function instance (for /metrics)."""

from __future__ import annotations

import redis

from infergate.errors import ServiceUnavailable

REQUESTS_TOTAL = "metrics:requests_total"  # under the key prefix


class RedisCounters:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._key = prefix + REQUESTS_TOTAL

    def count_request(self) -> None:
        self._client.incr(self._key)

    def total_requests(self) -> int:
        try:
            return int(self._client.get(self._key) or 0)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error
