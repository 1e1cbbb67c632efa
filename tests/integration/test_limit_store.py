"""Admission in a real Redis: request totals, sliding-window limits and a model server's
circuit breaker, each request admitted in one script and concluded in another. (The pool's
choice among several servers: test_pool_store.py.)"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from devkit.backends import free_port
from redis.cluster import RedisCluster

from infergate.domain.admission import Conclusion, Limit
from infergate.domain.errors import RateLimiterUnavailable
from infergate.domain.pool import UNBOUNDED, Candidate, Choice, Departure, Route
from infergate.stores.counters import RedisCounters
from infergate.stores.limits import RedisLimitStore
from infergate.stores.pool import RouteKeys
from infergate.stores.redis_keys import pool as pool_keys
from infergate.stores.redis_keys import shard
from tests.support import services

# One server, as OLLAMA_URL alone configures it.
ALONE = Route("smollm2:135m", (Choice("smollm2:135m", (Candidate("ollama", UNBOUNDED, 1.0, True),)),), pooled=False)


def store(client) -> RedisLimitStore:
    keys = RouteKeys("infergate:", lease_ms=30_000, probe_ms=5_000, failures=3, open_ms=400)
    return RedisLimitStore(client, keys, prefix="infergate:", clustered=isinstance(client, RedisCluster))


@pytest.fixture
def redis_client(redis_on_both):
    """A single server's, then a cluster's: every rule here holds on both."""
    return redis_on_both


def rpm(key: str, limit: int, window_ms: int = 60_000) -> Limit:
    return Limit(key, limit, window_ms, 1)


def call_model(admissions: RedisLimitStore, *, healthy: bool | None, ticket: str = "t"):
    """Admit a model call and report how its server did; its decision."""
    decision = admissions.admit([rpm(f"rpm:{uuid.uuid4().hex}", 100)], subject="usr_1", ticket=ticket, route=ALONE)
    if decision.allowed:
        admissions.conclude(Conclusion(ticket, "usr_1", None, 0, departure=Departure(decision.seat.placement, healthy, 5)))
    return decision


def probing(decision) -> bool:
    """Whether the request was let through as its server's probe."""
    return decision.allowed and decision.seat.placement.probe


def fail(admissions: RedisLimitStore, times: int) -> None:
    for _ in range(times):
        call_model(admissions, healthy=False)


def wait_until_it_half_opens(redis_client, timeout: float = 10) -> None:
    """Until the breaker's open period has passed by Redis's own clock (it decides by it)."""
    services.wait_for_redis_time(redis_client, int(redis_client.hget(pool_keys("infergate:") + "breaker:server:ollama", "until")),
                                 timeout=timeout)


# -- limits -----------------------------------------------------------------

def test_the_limit_admits_exactly_n_per_window(redis_client):
    admissions = store(redis_client)
    decisions = [admissions.admit([rpm("rpm:key_1", 3)], subject="usr_1", ticket=f"t{i}") for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.states[0].remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].retry_after_ms <= 60_000
    assert 0 < decisions[-1].states[0].reset_after_ms <= 60_000


def test_subjects_are_limited_apart(redis_client):
    admissions = store(redis_client)
    assert admissions.admit([rpm("a", 1)], subject="usr_1", ticket="1").allowed
    assert admissions.admit([rpm("b", 1)], subject="usr_1", ticket="2").allowed
    assert not admissions.admit([rpm("a", 1)], subject="usr_1", ticket="3").allowed


def test_the_window_slides(redis_client):
    admissions = store(redis_client)
    assert admissions.admit([rpm("k", 1, 300)], subject="usr_1", ticket="1").allowed
    refused = admissions.admit([rpm("k", 1, 300)], subject="usr_1", ticket="2")
    assert not refused.allowed and 0 < refused.retry_after_ms <= 300
    # Retry-After's own promise, by the clock the window moves by: it was refused no later than now.
    services.wait_for_redis_time(redis_client, services.redis_time_ms(redis_client) + refused.retry_after_ms)
    assert admissions.admit([rpm("k", 1, 300)], subject="usr_1", ticket="3").allowed


def test_weighted_costs_count_tokens_and_a_conclusion_corrects_them(redis_client):
    admissions = store(redis_client)
    tpm = Limit("tpm:u", 1000, 60_000, 600)
    assert admissions.admit([tpm], subject="usr_1", ticket="a").allowed
    refused = admissions.admit([tpm], subject="usr_1", ticket="b")
    assert not refused.allowed and refused.states[0].remaining == 400
    # The first request really used 100 tokens: correcting it makes room.
    admissions.conclude(Conclusion("a", "usr_1", tpm, 100))
    assert admissions.admit([tpm], subject="usr_1", ticket="b").allowed


def test_a_request_is_counted_under_all_its_limits_or_none(redis_client):
    admissions = store(redis_client)
    requests, tokens = Limit("rpm:k", 10, 60_000, 1), Limit("tpm:u", 100, 60_000, 80)
    assert admissions.admit([requests, tokens], subject="usr_1", ticket="1").allowed
    refused = admissions.admit([requests, tokens], subject="usr_1", ticket="2")  # tokens do not fit
    assert not refused.allowed
    assert refused.states[0].remaining == 9  # so the request was not counted either
    assert admissions.admit([requests], subject="usr_1", ticket="3").states[0].remaining == 8


def test_a_corrected_cost_of_zero_removes_the_entry(redis_client):
    admissions = store(redis_client)
    tokens = Limit("tpm:z", 100, 60_000, 100)
    admissions.admit([tokens], subject="usr_1", ticket="a")
    admissions.conclude(Conclusion("a", "usr_1", tokens, 0))
    assert admissions.admit([tokens], subject="usr_1", ticket="b").allowed


def test_concurrent_requests_beyond_the_limit_admit_exactly_the_limit(redis_target):
    admissions = store(redis_target.client())
    admitted = []
    barrier = threading.Barrier(40)
    key = f"rpm:{uuid.uuid4().hex}"

    def hit(index: int) -> None:
        barrier.wait()
        admitted.append(admissions.admit([rpm(key, 25)], subject="usr_1", ticket=str(index)).allowed)

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 25


def test_the_running_total_matches_the_window_through_slides_corrections_and_loss(redis_client):
    admissions = store(redis_client)
    tpm = Limit("tpm:running", 10_000, 200, 50)
    window = shard("infergate:", "usr_1") + "rl:tpm:running"
    total = window + ":total"

    def members() -> int:
        return sum(int(member.rsplit(b":", 1)[1]) for member in redis_client.zrange(window, 0, -1))

    for ticket in range(6):
        assert admissions.admit([tpm], subject="usr_1", ticket=str(ticket)).allowed
        admissions.conclude(Conclusion(str(ticket), "usr_1", tpm, ticket * 3))
        assert int(redis_client.get(total)) == members()
    # Every one was admitted by now: once the window's length has passed, it is past them all.
    services.wait_for_redis_time(redis_client, services.redis_time_ms(redis_client) + tpm.window_ms + 1)
    assert admissions.admit([tpm], subject="usr_1", ticket="late").states[0].remaining == 10_000 - 50
    assert int(redis_client.get(total)) == members() == 50
    redis_client.delete(total)  # lost (evicted): recounted from the window
    assert admissions.admit([tpm], subject="usr_1", ticket="after").states[0].remaining == 10_000 - 100
    assert int(redis_client.get(total)) == members() == 100


def test_every_admission_counts_in_the_request_total_refused_or_not(redis_client):
    admissions, counters = store(redis_client), RedisCounters(redis_client, prefix="infergate:")
    before = counters.total_requests()
    for ticket in "abc":
        admissions.admit([rpm("rpm:total", 1)], subject="usr_1", ticket=ticket)
    assert counters.total_requests() == before + 3


def test_an_unreachable_redis_is_reported_at_once():
    from infergate.stores.redis_client import connect

    admissions = store(connect(f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    with pytest.raises(RateLimiterUnavailable):
        admissions.admit([rpm("k", 1)], subject="usr_1", ticket="t", route=ALONE)
    with pytest.raises(RateLimiterUnavailable):
        admissions.conclude(Conclusion("t", "usr_1", None, 0))
    assert time.monotonic() - started < 2.0  # no waiting on a Redis that is not there


# -- the circuit breaker ------------------------------------------------------

def test_consecutive_failures_open_it_and_it_refuses_at_once_with_how_long(redis_client):
    admissions = store(redis_client)
    fail(admissions, 2)
    assert call_model(admissions, healthy=None).allowed  # still closed
    fail(admissions, 1)
    refused = call_model(admissions, healthy=None)
    assert not refused.allowed and 0 < refused.unavailable_ms <= 400


def test_a_request_the_breaker_refuses_counts_under_no_limit(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    limit = rpm("rpm:refused", 5)
    assert admissions.admit([limit], subject="usr_1", ticket="x", route=ALONE).unavailable_ms > 0
    assert admissions.admit([limit], subject="usr_1", ticket="y").states[0].remaining == 4


def test_a_request_for_no_model_goes_through_an_open_breaker(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    assert admissions.admit([rpm("rpm:list", 5)], subject="usr_1", ticket="x").allowed


def test_a_success_clears_the_count(redis_client):
    admissions = store(redis_client)
    fail(admissions, 2)
    call_model(admissions, healthy=True)
    fail(admissions, 2)
    assert call_model(admissions, healthy=None).allowed


def test_it_half_opens_for_one_probe_whose_success_closes_it(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    wait_until_it_half_opens(redis_client)
    probe = admissions.admit([rpm("rpm:p", 9)], subject="usr_1", ticket="p", route=ALONE)
    assert probing(probe)
    assert admissions.admit([rpm("rpm:q", 9)], subject="usr_1", ticket="q", route=ALONE).unavailable_ms > 0  # one probe at a time
    admissions.conclude(Conclusion("p", "usr_1", None, 0, departure=Departure(probe.seat.placement, True, 5)))
    after = admissions.admit([rpm("rpm:r", 9)], subject="usr_1", ticket="r", route=ALONE)
    assert after.allowed and not probing(after)


def test_a_failed_probe_opens_it_again(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    wait_until_it_half_opens(redis_client)
    assert probing(call_model(admissions, healthy=False))
    assert call_model(admissions, healthy=None).unavailable_ms > 0


def test_an_abandoned_probe_lets_another_request_probe(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    wait_until_it_half_opens(redis_client)
    assert probing(call_model(admissions, healthy=None))  # admitted, then refused before asking the model
    assert probing(call_model(admissions, healthy=None))


def test_a_request_a_limit_refuses_does_not_take_the_probe(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    wait_until_it_half_opens(redis_client)
    full = rpm("rpm:full", 0)
    refused = admissions.admit([full], subject="usr_1", ticket="f", route=ALONE)
    assert not refused.allowed and refused.seat is None
    assert probing(call_model(admissions, healthy=None))


def test_instances_share_it(redis_client, redis_target):
    one, other = store(redis_client), store(redis_target.client())
    fail(one, 3)
    assert call_model(other, healthy=None).unavailable_ms > 0


def test_concurrent_callers_get_exactly_one_probe(redis_client):
    admissions = store(redis_client)
    fail(admissions, 3)
    wait_until_it_half_opens(redis_client)
    probes, barrier = [], threading.Barrier(20)

    def call() -> None:
        barrier.wait()
        decision = admissions.admit([rpm(f"rpm:{uuid.uuid4().hex}", 9)], subject="usr_1", ticket="c", route=ALONE)
        if decision.allowed:
            probes.append(probing(decision))

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert probes == [True]


def test_the_key_a_request_used_is_noted_at_most_once_a_minute(redis_client):
    from infergate.stores.key_activity import RedisKeyActivity

    admissions, activity = store(redis_client), RedisKeyActivity(redis_client, prefix="infergate:")
    assert activity.last_used("usr_1", ["key_a", "key_b"]) == {}
    admissions.admit([rpm("rpm:key_a", 10)], subject="usr_1", ticket="1", key_id="key_a")
    first = activity.last_used("usr_1", ["key_a", "key_b"])
    assert list(first) == ["key_a"]
    admissions.admit([rpm("rpm:key_a", 10)], subject="usr_1", ticket="2", key_id="key_a")
    assert activity.last_used("usr_1", ["key_a"]) == first  # not rewritten within the minute
