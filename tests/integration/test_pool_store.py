"""The pool's store (domain/pool.py's PoolStore), held to one contract by both implementations:
the Redis one the functions use and the in-memory one the unit tests use, so that the rule the
Redis script runs is the domain's `choose`. What only Redis does (many instances at once, its
own clock, waking a waiter) is tested against Redis alone."""

from __future__ import annotations

import threading

import pytest

from infergate.domain.pool import Candidate, Choice, Departure, Placement, PoolStore, Route
from infergate.stores.pool import WAKE, RedisPool, RouteKeys
from infergate.stores.redis_keys import pool as pool_keys
from tests.support import services
from tests.support.fakes import MemoryPool
from tests.support.waiting import wait_for

PREFIX = "pooltest:"


@pytest.fixture
def redis_client(redis_on_both):
    """A single server's, then a cluster's: every rule here holds on both."""
    return redis_on_both


def redis_pool(client, *, failures: int = 3, open_ms: int = 60_000) -> RedisPool:
    keys = RouteKeys(PREFIX, lease_ms=60_000, probe_ms=60_000, failures=failures, open_ms=open_ms)
    return RedisPool(client, keys, prefix=PREFIX)


@pytest.fixture(params=["memory", "redis", "redis cluster"])
def pool(request) -> PoolStore:
    if request.param == "memory":
        return MemoryPool(failures=3, open_ms=60_000)
    cluster = request.param == "redis cluster"
    client = services.RedisTarget(request.getfixturevalue("redis_cluster_url" if cluster else "redis_url"),
                                  cluster=cluster).client()
    client.flushall()
    return redis_pool(client)


def route(*servers: tuple[str, int, bool], model: str = "m", fallback: tuple[str, list] | None = None) -> Route:
    """A route to `model` on `servers` (name, slots, loaded), then to `fallback`'s model, if given."""
    choices = [Choice(model, tuple(Candidate(name, slots, 1.0, loaded) for name, slots, loaded in servers))]
    if fallback is not None:
        choices.append(Choice(fallback[0], tuple(Candidate(name, slots, 1.0, loaded) for name, slots, loaded in fallback[1])))
    return Route(model, tuple(choices))


def placed(pool: PoolStore, wanted: Route, ticket: str, **kwargs) -> str | None:
    seat = pool.place(wanted, ticket=ticket, **kwargs)
    return seat.placement.server if seat.placement else None


def free(pool: PoolStore, server: str, ticket: str, *, healthy: bool | None = True) -> None:
    pool.release(Departure(Placement(server, "m"), healthy, 10), ticket=ticket)


def test_the_server_with_the_model_loaded_takes_requests_until_it_is_full(pool):
    wanted = route(("cold", 2, False), ("warm", 2, True))
    assert [placed(pool, wanted, f"t{n}") for n in range(4)] == ["warm", "warm", "cold", "cold"]
    seat = pool.place(wanted, ticket="t5")
    assert seat.placement is None and seat.waiting


def test_requests_spread_to_the_least_busy_server(pool):
    wanted = route(("a", 4, False), ("b", 4, False))
    servers = [placed(pool, wanted, f"t{n}") for n in range(8)]
    assert sorted(servers) == ["a"] * 4 + ["b"] * 4
    free(pool, "b", f"t{servers.index('b')}")
    assert placed(pool, wanted, "next") == "b"


def test_the_line_keeps_its_order_and_a_freed_slot_goes_to_its_first(pool):
    wanted = route(("a", 1, True))
    assert placed(pool, wanted, "holder") == "a"
    assert pool.place(wanted, ticket="first").waiting
    assert pool.place(wanted, ticket="second").waiting
    free(pool, "a", "holder")
    assert pool.place(wanted, ticket="second").waiting, "the first in line is ahead of it"
    assert placed(pool, wanted, "first") == "a"
    pool.leave(wanted, ticket="second")
    free(pool, "a", "first")
    assert placed(pool, wanted, "newcomer") == "a", "one who left the line holds no place in it"


def test_consecutive_failures_open_one_servers_breaker_and_the_others_serve(pool):
    wanted = route(("a", 8, True), ("b", 8, False))
    for n in range(3):
        assert placed(pool, wanted, f"f{n}") == "a"
        free(pool, "a", f"f{n}", healthy=False)
    assert placed(pool, wanted, "next") == "b"
    states = {state.name: state for state in pool.states(["a", "b"])}
    assert states["a"].breaker == "open" and states["b"].breaker == "closed" and states["b"].in_flight == 1
    alone = route(("a", 8, True))
    seat = pool.place(alone, ticket="nowhere")
    assert seat.placement is None and not seat.waiting and 0 < seat.retry_ms <= 60_000


def test_a_success_clears_the_failures_and_a_callers_error_counts_for_nothing(pool):
    wanted = route(("a", 8, True))
    for n in range(2):
        placed(pool, wanted, f"f{n}")
        free(pool, "a", f"f{n}", healthy=False)
    placed(pool, wanted, "ok")
    free(pool, "a", "ok")
    for n in range(2):
        placed(pool, wanted, f"g{n}")
        free(pool, "a", f"g{n}", healthy=False)
    placed(pool, wanted, "theirs")
    free(pool, "a", "theirs", healthy=None)
    assert placed(pool, wanted, "still") == "a"


def test_a_request_moving_on_excludes_the_servers_it_tried(pool):
    wanted = route(("a", 8, True), ("b", 8, True), ("c", 8, False))
    assert placed(pool, wanted, "t", exclude=["a"]) == "b"
    assert placed(pool, wanted, "u", exclude=["a", "b"]) == "c"
    seat = pool.place(wanted, ticket="v", exclude=["a", "b", "c"])
    assert seat.placement is None and not seat.waiting


def test_an_alias_takes_its_next_model_when_the_first_models_servers_are_full(pool):
    wanted = route(("big", 1, True), model="big:70b", fallback=("small:1b", [("small", 4, True)]))
    assert pool.place(wanted, ticket="one").placement == Placement("big", "big:70b")
    assert pool.place(wanted, ticket="two").placement == Placement("small", "small:1b")


def test_a_servers_last_minute_is_reported(pool):
    wanted = route(("a", 8, True))
    for n, healthy in enumerate([True, True, False]):
        placed(pool, wanted, f"t{n}")
        free(pool, "a", f"t{n}", healthy=healthy)
    placed(pool, wanted, "flying")
    (state,) = pool.states(["a"])
    assert state.in_flight == 1 and state.breaker == "closed"
    if isinstance(pool, RedisPool):  # the in-memory pool keeps no minute
        assert (state.requests_last_minute, state.failures_last_minute, state.p50_ms) == (3, 1, 10)


# -- Redis alone ----------------------------------------------------------------------

def test_many_instances_at_once_never_put_more_on_a_server_than_its_slots(redis_client, redis_target):
    wanted = route(("a", 3, True), ("b", 2, False))
    instances = [redis_pool(redis_target.client()) for _ in range(6)]
    seats, barrier, lock = [], threading.Barrier(30), threading.Lock()

    def take(n: int) -> None:
        barrier.wait()
        seat = instances[n % 6].place(wanted, ticket=f"t{n}")
        with lock:
            seats.append(seat)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    servers = [seat.placement.server for seat in seats if seat.placement]
    assert sorted(servers) == ["a"] * 3 + ["b"] * 2
    assert sum(seat.waiting for seat in seats) == 25


def test_a_freed_slot_wakes_the_first_in_line(redis_client):
    pool = redis_pool(redis_client)
    wanted = route(("a", 1, True))
    placed(pool, wanted, "holder")
    assert pool.place(wanted, ticket="waiter").waiting
    free(pool, "a", "holder")
    assert redis_client.llen(pool_keys(PREFIX) + WAKE + "waiter") == 1
    pool.wait("waiter", 5)  # returns at once: it was woken
    assert placed(pool, wanted, "waiter") == "a"


def test_a_waiter_that_stops_asking_loses_its_place(redis_client):
    pool = redis_pool(redis_client)
    wanted = route(("a", 1, True))
    placed(pool, wanted, "holder")
    assert pool.place(wanted, ticket="gone").waiting  # and never asks again: its function died
    free(pool, "a", "holder")
    wait_for(lambda: placed(pool, wanted, "late") == "a", timeout=30,
             what="the silent waiter's place lapsing")


def test_a_crashed_requests_slot_comes_back_when_its_lease_ends(redis_client):
    keys = RouteKeys(PREFIX, lease_ms=300, probe_ms=300, failures=3, open_ms=1_000)
    pool = RedisPool(redis_client, keys, prefix=PREFIX)
    wanted = route(("a", 1, True))
    assert placed(pool, wanted, "crashed") == "a"  # and never released
    wait_for(lambda: placed(pool, wanted, "after") == "a", timeout=30, what="the lease ending")
