"""The sliding-window limiter against a real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from devkit.backends import free_port

from infergate.domain.ports import Limit
from infergate.errors import RateLimiterUnavailable
from infergate.stores.rate_limit import RedisRateLimiter


def rpm(key: str, limit: int, window_ms: int = 60_000) -> Limit:
    return Limit(key, limit, window_ms, 1)


def test_the_limit_admits_exactly_n_per_window(redis_client):
    limiter = RedisRateLimiter(redis_client)
    decisions = [limiter.admit([rpm("rpm:key_1", 3)], ticket=f"t{i}") for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.states[0].remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].retry_after_ms <= 60_000
    assert 0 < decisions[-1].states[0].reset_after_ms <= 60_000


def test_subjects_are_limited_apart(redis_client):
    limiter = RedisRateLimiter(redis_client)
    assert limiter.admit([rpm("a", 1)], ticket="1").allowed
    assert limiter.admit([rpm("b", 1)], ticket="2").allowed
    assert not limiter.admit([rpm("a", 1)], ticket="3").allowed


def test_the_window_slides(redis_client):
    limiter = RedisRateLimiter(redis_client)
    assert limiter.admit([rpm("k", 1, 300)], ticket="1").allowed
    refused = limiter.admit([rpm("k", 1, 300)], ticket="2")
    assert not refused.allowed and refused.retry_after_ms <= 300
    time.sleep(0.35)
    assert limiter.admit([rpm("k", 1, 300)], ticket="3").allowed


def test_weighted_costs_count_tokens(redis_client):
    limiter = RedisRateLimiter(redis_client)
    tpm = Limit("tpm:u", 1000, 60_000, 600)
    assert limiter.admit([tpm], ticket="a").allowed
    refused = limiter.admit([tpm], ticket="b")
    assert not refused.allowed and refused.states[0].remaining == 400
    # The first request really used 100 tokens: correcting it makes room.
    limiter.adjust(tpm, ticket="a", cost=100)
    assert limiter.admit([tpm], ticket="b").allowed


def test_a_request_is_counted_under_all_its_limits_or_none(redis_client):
    limiter = RedisRateLimiter(redis_client)
    requests, tokens = Limit("rpm:k", 10, 60_000, 1), Limit("tpm:u", 100, 60_000, 80)
    assert limiter.admit([requests, tokens], ticket="1").allowed
    refused = limiter.admit([requests, tokens], ticket="2")  # tokens do not fit
    assert not refused.allowed
    assert refused.states[0].remaining == 9  # so the request was not counted either
    assert limiter.admit([requests], ticket="3").states[0].remaining == 8


def test_an_adjusted_cost_of_zero_removes_the_entry(redis_client):
    limiter = RedisRateLimiter(redis_client)
    tokens = Limit("tpm:z", 100, 60_000, 100)
    limiter.admit([tokens], ticket="a")
    limiter.adjust(tokens, ticket="a", cost=0)
    assert limiter.admit([tokens], ticket="b").allowed


def test_concurrent_requests_beyond_the_limit_admit_exactly_the_limit(redis_url):
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url, max_connections=64))
    admitted = []
    barrier = threading.Barrier(40)
    key = f"rpm:{uuid.uuid4().hex}"

    def hit(index: int) -> None:
        barrier.wait()
        admitted.append(limiter.admit([rpm(key, 25)], ticket=str(index)).allowed)

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 25


def test_an_unreachable_redis_is_reported_at_once():
    from infergate.stores.redis_client import connect

    limiter = RedisRateLimiter(connect(f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    with pytest.raises(RateLimiterUnavailable):
        limiter.admit([rpm("k", 1)], ticket="t")
    assert time.monotonic() - started < 1.0
