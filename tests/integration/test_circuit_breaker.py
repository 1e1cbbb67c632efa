"""The model server's circuit breaker, shared through a real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from infergate.errors import ServiceUnavailable
from infergate.stores.circuit_breaker import RedisCircuitBreaker


def breaker(redis_client, **overrides) -> RedisCircuitBreaker:
    settings = {"failures": 3, "open_seconds": 0.4, "probe_seconds": 5, **overrides}
    return RedisCircuitBreaker(redis_client, **settings)


def fail(b: RedisCircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.after_call(b.before_call(), ok=False)


def test_consecutive_failures_open_it_and_it_refuses_at_once_with_retry_after(redis_client):
    b = breaker(redis_client)
    fail(b, 2)
    b.before_call()  # still closed
    fail(b, 1)
    with pytest.raises(ServiceUnavailable) as refused:
        b.before_call()
    assert refused.value.headers["Retry-After"] == "1"


def test_a_success_clears_the_count(redis_client):
    b = breaker(redis_client)
    fail(b, 2)
    b.after_call(b.before_call(), ok=True)
    fail(b, 2)
    assert not b.before_call().probe


def test_it_half_opens_for_one_probe_whose_success_closes_it(redis_client):
    b = breaker(redis_client)
    fail(b, 3)
    time.sleep(0.45)
    probe = b.before_call()
    assert probe.probe
    with pytest.raises(ServiceUnavailable):
        b.before_call()  # one probe at a time
    b.after_call(probe, ok=True)
    assert not b.before_call().probe


def test_a_failed_probe_opens_it_again(redis_client):
    b = breaker(redis_client)
    fail(b, 3)
    time.sleep(0.45)
    b.after_call(b.before_call(), ok=False)
    with pytest.raises(ServiceUnavailable):
        b.before_call()


def test_an_abandoned_probe_lets_another_request_probe(redis_client):
    b = breaker(redis_client)
    fail(b, 3)
    time.sleep(0.45)
    b.abandon(b.before_call())
    assert b.before_call().probe


def test_instances_share_it(redis_client, redis_url):
    import redis

    one, other = breaker(redis_client), breaker(redis.Redis.from_url(redis_url))
    fail(one, 3)
    with pytest.raises(ServiceUnavailable):
        other.before_call()


def test_concurrent_callers_get_exactly_one_probe(redis_client):
    b = breaker(redis_client)
    fail(b, 3)
    time.sleep(0.45)
    probes, barrier = [], threading.Barrier(20)

    def call() -> None:
        barrier.wait()
        try:
            probes.append(b.before_call().probe)
        except ServiceUnavailable:
            pass

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert probes == [True]


def test_without_redis_calls_go_through_at_once():
    from devkit.backends import free_port

    from infergate.stores.redis_client import connect

    b = RedisCircuitBreaker(connect(f"redis://127.0.0.1:{free_port()}/0"), failures=1, open_seconds=1, probe_seconds=1)
    started = time.monotonic()
    b.after_call(b.before_call(), ok=False)
    assert not b.before_call().probe
    assert time.monotonic() - started < 1.0  # no waiting on a Redis that is not there
