"""A user's requests in flight, held in a real Redis across instances: at most N at once,
each slot freed when its request is concluded, or when its lease runs out if the request's
function died."""

from __future__ import annotations

import threading

import pytest
from redis.cluster import RedisCluster

from infergate.domain.admission import Conclusion, Limit, Slots
from infergate.domain.pool import Departure, Placement
from infergate.stores.limits import RedisLimitStore
from infergate.stores.pool import RouteKeys
from tests.integration.test_limit_store import ALONE
from tests.support.waiting import wait_for

KEYS = RouteKeys("infergate:", lease_ms=60_000, probe_ms=5_000, failures=3, open_ms=1_000)


def instance(client) -> RedisLimitStore:
    return RedisLimitStore(client, KEYS, prefix="infergate:", clustered=isinstance(client, RedisCluster))


@pytest.fixture
def redis_client(redis_on_both):
    """A single server's, then a cluster's: every rule here holds on both."""
    return redis_on_both


def owner(slots: Slots) -> str:
    """The user whose slots they are: `slots:<user>`."""
    return slots.key.removeprefix("slots:")


def admit(store: RedisLimitStore, ticket: str, slots: Slots, *, rpm: int = 1000):
    return store.admit([Limit("rpm:key_1", rpm, 60_000, 1)], subject=owner(slots), ticket=ticket, slots=slots, route=ALONE)


def free(store: RedisLimitStore, ticket: str, slots: Slots) -> None:
    store.conclude(Conclusion(ticket, owner(slots), None, 0, slots, Departure(Placement("ollama", "smollm2:135m"), True, 5)))


def test_n_requests_in_flight_across_instances_and_the_next_is_refused_without_being_counted(redis_client):
    slots = Slots("slots:usr_1", 3, 60_000)
    instances = [instance(redis_client) for _ in range(3)]
    decisions = [admit(store, f"t{n}", slots) for n, store in enumerate(instances)]
    assert all(decision.allowed for decision in decisions)

    refused = admit(instances[0], "t3", slots)
    assert not refused.allowed and refused.slots_full
    assert refused.states[0].remaining == 1000 - 3, "a refused request is counted under no limit"

    free(instances[1], "t1", slots)
    assert admit(instances[2], "t4", slots).allowed


def test_concurrent_admissions_never_exceed_the_slots(redis_client):
    slots = Slots("slots:usr_2", 4, 60_000)
    allowed, lock = [], threading.Lock()

    def one(n: int) -> None:
        decision = admit(instance(redis_client), f"c{n}", slots)
        with lock:
            allowed.append(decision.allowed)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 4


def test_a_slot_whose_holder_died_is_free_once_its_lease_ends(redis_client):
    slots = Slots("slots:usr_3", 1, 300)
    store = instance(redis_client)
    assert admit(store, "crashed", slots).allowed  # and never concluded
    assert admit(store, "next", slots).slots_full
    wait_for(lambda: admit(store, "after", slots).allowed, timeout=10, what="the lease ending")


def test_users_have_slots_of_their_own(redis_client):
    store = instance(redis_client)
    assert admit(store, "a", Slots("slots:usr_a", 1, 60_000)).allowed
    assert admit(store, "b", Slots("slots:usr_b", 1, 60_000)).allowed


def test_a_slot_whose_admission_reply_was_lost_is_freed_when_the_request_is_concluded(redis_client):
    from infergate.domain.admission import Gatekeeper
    from infergate.domain.errors import RateLimiterUnavailable
    from infergate.domain.plans import Plan
    from infergate.domain.principal import Principal
    from tests.support.fakes import RecordingTelemetry

    class ReplyLost(RedisLimitStore):
        """The script runs on the server; its answer never arrives."""

        def admit(self, *args, **kwargs):
            super().admit(*args, **kwargs)
            raise RateLimiterUnavailable("rate limiter unavailable: TimeoutError")

    store = instance(redis_client)
    lossy = ReplyLost(redis_client, KEYS, prefix="infergate:", clustered=isinstance(redis_client, RedisCluster))
    who = Principal(user_id="usr_lost", key_id="key_lost", plan=Plan(
        name="free", monthly_token_quota=10**6, rate_limit_rpm=100, rate_limit_tpm=10**6, max_output_tokens=100,
        max_concurrent_requests=1))
    admitted = Gatekeeper(lossy, fail_open=True, lease_seconds=60, telemetry=RecordingTelemetry()).admit(
        who, tokens=50, route=ALONE)
    assert admit(store, "other", Slots("slots:usr_lost", 1, 60_000)).slots_full, "the script did take the slot"
    Gatekeeper(store, fail_open=True, lease_seconds=60, telemetry=RecordingTelemetry()).conclude(
        admitted, tokens=0, departure=Departure(admitted.seat.placement, True, 5))
    assert admit(store, "next", Slots("slots:usr_lost", 1, 60_000)).allowed, "concluding gave it back"
