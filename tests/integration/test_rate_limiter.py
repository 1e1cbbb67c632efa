"""The sliding-window limiter against a real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from infergate.errors import RateLimiterUnavailable
from infergate.stores.rate_limit import RedisRateLimiter


def test_the_limit_admits_exactly_n_per_window(redis_client):
    limiter = RedisRateLimiter(redis_client)
    decisions = [limiter.hit("rpm:key_1", limit=3, window_ms=60_000) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].reset_after_ms <= 60_000


def test_subjects_are_limited_apart(redis_client):
    limiter = RedisRateLimiter(redis_client)
    assert limiter.hit("rpm:a", limit=1, window_ms=60_000).allowed
    assert limiter.hit("rpm:b", limit=1, window_ms=60_000).allowed
    assert not limiter.hit("rpm:a", limit=1, window_ms=60_000).allowed


def test_the_window_slides(redis_client):
    limiter = RedisRateLimiter(redis_client)
    assert limiter.hit("rpm:k", limit=1, window_ms=300).allowed
    assert not limiter.hit("rpm:k", limit=1, window_ms=300).allowed
    time.sleep(0.35)
    assert limiter.hit("rpm:k", limit=1, window_ms=300).allowed


def test_concurrent_hits_admit_exactly_the_limit(redis_url):
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url, max_connections=64))
    admitted = []
    barrier = threading.Barrier(40)
    subject = f"rpm:{uuid.uuid4().hex}"

    def hit() -> None:
        barrier.wait()
        admitted.append(limiter.hit(subject, limit=25, window_ms=60_000).allowed)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 25


def test_an_unreachable_redis_is_reported_as_such():
    from devkit.backends import free_port

    limiter = RedisRateLimiter(redis.Redis(port=free_port(), socket_connect_timeout=0.2))
    with pytest.raises(RateLimiterUnavailable):
        limiter.hit("rpm:k", limit=1, window_ms=1000)
