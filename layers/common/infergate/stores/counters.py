"""Request counting shared by every function instance (for /metrics)."""

from __future__ import annotations

import redis

from infergate.errors import ServiceUnavailable

REQUESTS_TOTAL = "infergate:metrics:requests_total"


class RedisCounters:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def count_request(self) -> None:
        self._client.incr(REQUESTS_TOTAL)

    def total_requests(self) -> int:
        try:
            return int(self._client.get(REQUESTS_TOTAL) or 0)
        except redis.RedisError as error:
            raise ServiceUnavailable("Request totals are unavailable: Redis cannot be reached.") from error
