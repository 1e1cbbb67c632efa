"""The pool in Redis: every server's requests in flight, its circuit breaker, the requests
waiting for one of its slots, and which server a conversation last went to, shared by every
function instance.

A server's requests in flight are the members of a sorted set scored by when their lease ends:
a function that dies mid-request frees its slot when the lease ends. Choosing a server and
taking its slot is one step of a script (part of admission, stores/limits.py, or `place` for a
request that waited or moves to another server), so no two instances can take one slot.

While every server a request may use is full, it waits in line on each of them: a sorted set
per server, scored by arrival. A request takes a server's slot only if fewer requests wait
ahead of it there than the server has free slots, so the line keeps its order. A waiter says
it is still there each time it asks (at least every WAKE_SECONDS); one silent for STALE_MS
(its function died) is dropped from the line. A slot given back wakes the first in its line
(a list of its own the waiter blocks on), so a freed slot is taken within a round trip.

Each server's breaker is a hash, as the single breaker was: closed, open for `open_ms`, then
half-open with one probe at a time. Its last minute of requests (latency, success) is a sorted
set, for operators.

Every key of the pool's lies under one hash tag (stores/redis_keys.py), the wake lists too,
which are the only keys a script names itself rather than being given.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from infergate.domain.errors import RateLimiterUnavailable
from infergate.domain.pool import Departure, Placement, Route, Seat, ServerState
from infergate.stores.lua import NOW, POOL, RELEASE
from infergate.stores.redis_keys import pool as pool_keys
from infergate.tracing import span

# Under the pool's tag (stores/redis_keys.py).
BREAKER = "breaker:server:"
IN_FLIGHT = "pool:inflight:"
WAITING = "pool:waiting:"
STATS = "pool:stats:"
SEEN = "pool:seen"  # a hash: waiting ticket -> when it last asked, ms
WAKE = "pool:wake:"
CONVERSATION = "pool:conversation:"
NOWHERE = "pool:none"  # a key no script writes to, for what a request does not have
STALE_MS = 2_000
WAKE_SECONDS = 0.25  # a waiter asks again at least this often, woken or not
CONVERSATION_MS = 600_000  # how long a conversation is remembered to have gone to a server

# KEYS and ARGV: a route's (POOL), from 1. The seat, as `place` gives it.
PLACE = """
local route = read_route(1, 1)
local full, retry = survey(route, ARGV[#ARGV])
return place(route, ARGV[#ARGV], full, retry)
"""

# KEYS and ARGV: a route's, from 1; the ticket last.
_LEAVE = """
local route = read_route(1, 1)
leave_lines(route, ARGV[#ARGV])
"""

# KEYS: RELEASE's. ARGV: RELEASE's.
RELEASED = "return release(1, 1)"

# KEYS: per server its breaker, requests in flight and last minute. Per server: breaker state,
# requests in flight, then the last minute's members.
_STATES = """
local reply = {}
for i = 1, #KEYS, 3 do
  local state = redis.call('HGET', KEYS[i], 'state') or 'closed'
  if state == 'open' and tonumber(redis.call('HGET', KEYS[i], 'until') or '0') <= now then state = 'half_open' end
  reply[#reply + 1] = state
  reply[#reply + 1] = redis.call('ZCOUNT', KEYS[i + 1], now, '+inf')
  reply[#reply + 1] = redis.call('ZRANGEBYSCORE', KEYS[i + 2], now - 60000, '+inf')
end
return reply
"""


class RouteKeys:
    """How a route and a departure travel to the scripts: keys and arguments in the order POOL
    and RELEASE read them."""

    def __init__(self, prefix: str, *, lease_ms: int, probe_ms: int, failures: int, open_ms: int) -> None:
        self._prefix = pool_keys(prefix)
        self.lease_ms, self.probe_ms, self.failures, self.open_ms = lease_ms, probe_ms, failures, open_ms

    def route(self, route: Route, exclude: Sequence[str] = ()) -> tuple[list[str], list[str | int | float]]:
        servers = route.servers()
        index = {name: position + 1 for position, name in enumerate(servers)}
        slots = {c.server: (c.slots, c.weight) for choice in route.choices for c in choice.candidates}
        keys = [self._prefix + SEEN, self._conversation(route)]
        args: list[str | int | float] = [self.lease_ms, self.probe_ms, STALE_MS, self._prefix + WAKE,
                                         int(route.continued), len(servers)]
        for name in servers:
            keys += [self._prefix + BREAKER + name, self._prefix + IN_FLIGHT + name, self._prefix + WAITING + name]
            args += [name, *slots[name]]
        args.append(len(route.choices))
        for choice in route.choices:
            args += [choice.model, len(choice.candidates)]
            for candidate in choice.candidates:
                args += [index[candidate.server], int(candidate.loaded)]
        excluded = [index[name] for name in exclude if name in index]
        return keys, [*args, len(excluded), *excluded]

    def release(self, departure: Departure, ticket: str) -> tuple[list[str], list[str | int]]:
        server, route = departure.placement.server, departure.route
        keys = [self._prefix + BREAKER + server, self._prefix + IN_FLIGHT + server, self._prefix + WAITING + server,
                self._prefix + STATS + server, self._conversation(route)]
        outcome = {True: "ok", False: "fail", None: ""}[departure.healthy]
        remembered = CONVERSATION_MS if route is not None and route.conversation else 0
        return keys, [outcome, int(departure.placement.probe), self.failures, self.open_ms, ticket,
                      departure.latency_ms, remembered, self._prefix + WAKE, server]

    def _conversation(self, route: Route | None) -> str:
        if route is None or route.conversation is None:
            return self._prefix + NOWHERE
        return self._prefix + CONVERSATION + route.conversation


def seat_of(kind: int, server: bytes | str, model: bytes | str, probe: int, retry_ms: int) -> Seat:
    """The seat `place` returned: 1 placed, 2 waiting, 3 nowhere to go."""
    if int(kind) == 1:
        return Seat(Placement(_text(server), _text(model), bool(int(probe))))
    return Seat(waiting=int(kind) == 2, retry_ms=int(retry_ms))


class RedisPool:
    def __init__(self, client: redis.Redis, keys: RouteKeys, *, prefix: str) -> None:
        self._client, self._keys, self._prefix = client, keys, pool_keys(prefix)
        self._place = client.register_script(NOW + POOL + PLACE)
        self._leave = client.register_script(NOW + POOL + _LEAVE)
        self._release = client.register_script(NOW + RELEASE + RELEASED)
        self._states = client.register_script(NOW + _STATES)

    def place(self, route: Route, *, ticket: str, exclude: Sequence[str] = ()) -> Seat:
        keys, args = self._keys.route(route, exclude)
        with _asking("place"):
            return seat_of(*self._place(keys=keys, args=[*args, ticket]))

    def wait(self, ticket: str, seconds: float) -> None:
        with _asking("wait"):
            self._client.blpop([self._prefix + WAKE + ticket], timeout=max(0.01, min(seconds, WAKE_SECONDS)))

    def leave(self, route: Route, *, ticket: str) -> None:
        keys, args = self._keys.route(route)
        with _asking("leave"):
            self._leave(keys=keys, args=[*args, ticket])

    def release(self, departure: Departure, *, ticket: str) -> None:
        keys, args = self._keys.release(departure, ticket)
        with _asking("release"):
            self._release(keys=keys, args=args)

    def states(self, servers: Sequence[str]) -> list[ServerState]:
        keys = [self._prefix + key + name for name in servers for key in (BREAKER, IN_FLIGHT, STATS)]
        with _asking("states"):
            reply = self._states(keys=keys, args=[]) if keys else []
        return [_state(name, *reply[i * 3:i * 3 + 3]) for i, name in enumerate(servers)]


@contextmanager
def _asking(operation: str) -> Iterator[None]:
    """A call to Redis, in a span; its failure is RateLimiterUnavailable."""
    try:
        with span("Redis", operation=operation):
            yield
    except redis.RedisError as error:
        raise RateLimiterUnavailable(f"the pool's store is unavailable: {type(error).__name__}") from error


def _state(name: str, breaker: bytes, in_flight: int, minute: list[bytes]) -> ServerState:
    latencies, failures = [], 0
    for member in minute:
        _, latency, ok = _text(member).rsplit(":", 2)
        latencies.append(int(latency))
        failures += ok != "1"
    return ServerState(name, _text(breaker), int(in_flight), len(minute), failures,
                       int(statistics.median(latencies)) if latencies else None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
