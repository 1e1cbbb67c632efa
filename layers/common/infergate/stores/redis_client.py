"""One Redis client per function instance.

Timeouts are short and there is one immediate retry (for a pooled
connection the server has dropped), not redis-py's default of three with
growing pauses: Redis only paces requests, breaks circuits and counts, and
an unreachable Redis must not hold up for seconds a chat that MongoDB can
still account for.
"""

from __future__ import annotations

import functools

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infergate.config import get_settings


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


@functools.cache
def get_redis() -> redis.Redis:
    return connect(get_settings().redis_url)
