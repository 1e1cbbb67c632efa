"""One Redis client per function instance.

Timeouts are short: Redis only paces requests and counts them, and a slow
Redis must not hold up a chat that MongoDB can still account for.
"""

from __future__ import annotations

import functools

import redis

from infergate.config import get_settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        health_check_interval=30,
    )
