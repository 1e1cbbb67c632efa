"""A store that is hung (SIGSTOP) or down costs a call a bounded time, then a clear failure;
when it is back, calls succeed again. Each store here is this module's own."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import redis
from devkit import backends

from infergate.api.errors import headers_of
from infergate.domain.accounts import ApiKeyRecord, UserRecord
from infergate.domain.errors import ServiceUnavailable
from infergate.stores import mongo, redis_client
from infergate.stores.accounts import MongoAccountStore


@contextmanager
def hung(service: backends.Service):
    os.kill(service.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(service.process.pid, signal.SIGCONT)


def timed(call) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as error:  # noqa: BLE001 - what failed, and how fast, is the point
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def eventually(call, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def own_redis():
    service = backends.start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def own_mongo():
    service = backends.start_mongo(":memory:")
    yield service
    service.stop()


def test_a_hung_redis_costs_one_timeout_then_commands_fail_at_once(own_redis):
    client = redis_client.connect(own_redis.url)
    client.ping()
    with hung(own_redis):
        first, error = timed(client.ping)
        assert isinstance(error, redis.RedisError)
        assert first < 4 * redis_client.TIMEOUT_SECONDS
        later = [timed(client.ping) for _ in range(20)]
        assert all(isinstance(error, redis.RedisError) for _, error in later)
        # Waiting on the network would take the whole timeout; a loaded machine may take a few ms without.
        assert max(seconds for seconds, _ in later) < redis_client.TIMEOUT_SECONDS / 4, (
            "during an outage nothing waits on the network")
    eventually(client.ping)


def test_a_redis_that_refuses_connections_fails_fast_too():
    client = redis_client.connect(f"redis://127.0.0.1:{backends.free_port()}/0")
    results = [timed(client.ping) for _ in range(10)]
    assert all(isinstance(error, redis.ConnectionError) for _, error in results)
    assert sum(seconds for seconds, _ in results) < 2 * redis_client.TIMEOUT_SECONDS


def test_a_hung_mongodb_fails_a_store_call_within_its_bound(own_mongo):
    client = mongo.connect(own_mongo.url)
    store = MongoAccountStore(client["outages"])
    mongo.ensure_indexes(client["outages"])
    now = datetime.now(UTC)

    def register(n: int) -> None:
        user = UserRecord(user_id=f"usr_{n}", email=f"u{n}@example.com", plan="free", created_at=now)
        store.create(user, ApiKeyRecord(key_id=f"key_{n}", user_id=user.user_id, key_hash=f"h{n}", created_at=now))

    register(0)
    with hung(own_mongo):
        # A transaction's own retries would run for 120 s: the call's bound ends them.
        for n in (1, 2):
            seconds, error = timed(lambda n=n: register(n))
            assert isinstance(error, ServiceUnavailable), error
            assert headers_of(error) == {"Retry-After": "1"}
            assert seconds < mongo.CALL_SECONDS + 1.5
        seconds, error = timed(lambda: store.find_user("usr_0"))
        assert isinstance(error, ServiceUnavailable) and seconds < mongo.CALL_SECONDS + 1.5
    eventually(lambda: register(3))
    assert store.find_user("usr_3") is not None
