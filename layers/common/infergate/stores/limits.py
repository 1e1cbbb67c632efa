"""Admission in Redis: request totals, sliding-window limits, a user's slots and a server's
(stores/pool.py), in one Lua script and one round trip per request; a second script and round
trip concludes the request, and carries its metrics (stores/held.py). The scripts are in
stores/limit_scripts.py.

On a Redis Cluster a request's own state lies in its subject's shard and the pool under its
own tag (stores/redis_keys.py), so a model call's admission asks the shard, then the pool, and
its conclusion the shard, then the pool: four round trips rather than two. If the pool has no
server for an admitted call, what its shard counted is taken back.

Limits. Each admitted request is a member `<ticket>:<cost>` of a sorted set
scored by the time it was admitted (a request costs 1 under a
requests-per-minute limit, its tokens under a tokens-per-minute one). The
script drops members older than the window, sums the rest and admits the
request only if it fits every limit it is checked against; then it counts it
under all of them, or under none. It runs atomically on the server and reads
the server's clock, so any number of function instances share one exact
count: with a limit of N, N concurrent requests pass and the next is refused,
and no window of the limit's length ever holds more than N.

Each window also keeps a running total of what it holds, so a check costs
the members leaving the window rather than every member in it: a key sending
100 requests a second is checked as fast as one sending one.

Slots. A user's requests in flight are members of a sorted set scored by
when their lease ends. Admitting drops the leases that ended and gives the
request a slot if one is free; concluding takes it back. A function that
dies mid-request frees its slot when the lease ends.

Servers. A model call is first surveyed against its route's servers: if every one of them is
unhealthy (its circuit breaker open), it is refused at once and counts under no limit. Once
it fits its limits it is seated (stores/pool.py): a slot on a server, or a place in line.
Concluding gives the server's slot back and tells its breaker how the server did:
  closed     calls go through; each failure adds to a count of consecutive failures,
             and a success clears it. At the threshold the breaker opens.
  open       for `open_ms`, the server is passed over (a request with no other server is
             refused at once, 503 with Retry-After).
  half-open  then one request at a time is let through as a probe (for at most
             `probe_ms`): its success closes the breaker, its failure opens it again.
A request a limit refuses does not take the probe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import redis

from infergate.domain.admission import Conclusion, Limit, LimitState, Slots, Verdict
from infergate.domain.errors import RateLimiterUnavailable
from infergate.domain.pool import Route
from infergate.observability import logger, request_counted
from infergate.stores import held, redis_keys
from infergate.stores.counters import REQUESTS_TOTAL, SERIES
from infergate.stores.limit_scripts import ADMIT, CONCLUDE, RETRACT
from infergate.stores.lua import NOW, POOL, RELEASE
from infergate.stores.pool import NOWHERE, PLACE, RELEASED, RouteKeys, seat_of
from infergate.tracing import span

# Under a subject's shard (stores/redis_keys.py): one sorted set per limit and subject.
LIMITS = "rl:"
LAST_USED = "keys:last_used"  # a hash: key id -> when it was last used, ms, refreshed at most once a minute


class RedisLimitStore:
    def __init__(self, client: redis.Redis, keys: RouteKeys, *, prefix: str, clustered: bool = False) -> None:
        """`clustered`: Redis is a cluster, where a model call's shard and the pool are asked apart."""
        self._client, self._keys, self._prefix, self._clustered = client, keys, prefix, clustered
        self._admit = client.register_script(ADMIT)
        self._conclude = client.register_script(CONCLUDE)
        self._place = client.register_script(NOW + POOL + PLACE)
        self._release = client.register_script(NOW + RELEASE + RELEASED)
        self._retract = client.register_script(RETRACT)

    def admit(self, limits: Sequence[Limit], *, ticket: str, subject: str, key_id: str = "",
              slots: Slots | None = None, route: Route | None = None) -> Verdict:
        shard = redis_keys.shard(self._prefix, subject)
        keys = [shard + REQUESTS_TOTAL, shard + LAST_USED, self._slots(shard, slots)]
        args: list[str | int | float] = [ticket, key_id, slots.limit if slots else 0, slots.lease_ms if slots else 0,
                                         len(limits)]
        for limit in limits:
            keys += self._window(shard, limit)
            args += [limit.limit, limit.window_ms, limit.cost]
        together = route if not self._clustered else None  # on one server, the pool is asked in the same script
        if together is not None:
            route_keys, route_args = self._keys.route(together)
            keys, args = keys + route_keys, args + route_args
        verdict = self._verdict(self._asked("admit", self._admit, keys, args), limits, together)
        request_counted.set(True)
        if route is not None and together is None and verdict.allowed:
            return self._seated(verdict, shard, limits, ticket, slots, route)
        return verdict

    def conclude(self, conclusion: Conclusion) -> None:
        """Now, or, while the request's conclusions are held (stores/held.py), with its metrics."""
        waiting = held.holding()
        if waiting is not None:
            waiting.append(conclusion)
        else:
            self.conclude_with(conclusion, {})

    def conclude_held(self, metrics: Mapping[str, float]) -> bool:
        """Concludes what the request held, its `metrics` with the first; whether there was any."""
        conclusions = held.taken()
        for index, conclusion in enumerate(conclusions):
            self.conclude_with(conclusion, metrics if index == 0 else {})
        return bool(conclusions)

    def conclude_with(self, conclusion: Conclusion, metrics: Mapping[str, float]) -> None:
        shard, correction = redis_keys.shard(self._prefix, conclusion.subject), conclusion.token_limit
        keys = [self._slots(shard, conclusion.slots), *(self._window(shard, correction) if correction else
                                                       [shard + NOWHERE] * 2), shard + SERIES]
        args: list[str | int | float] = [
            conclusion.ticket, int(conclusion.slots is not None), int(correction is not None),
            *((f"{conclusion.ticket}:{correction.cost}", conclusion.tokens,
               f"{conclusion.ticket}:{conclusion.tokens}") if correction else ("", 0, "")),
            len(metrics), *(item for pair in metrics.items() for item in pair)]
        departure = conclusion.departure
        if departure is not None and not self._clustered:
            release_keys, release_args = self._keys.release(departure, conclusion.ticket)
            keys, args = keys + release_keys, args + release_args
        state = self._asked("conclude", self._conclude, keys, args)
        if departure is not None and self._clustered:
            state = self._asked("release", self._release, *self._keys.release(departure, conclusion.ticket))
        if state == b"open" and departure is not None and departure.healthy is False:
            logger.warning("a model server's circuit breaker is open", extra={"server": departure.placement.server})

    def _seated(self, verdict: Verdict, shard: str, limits: Sequence[Limit], ticket: str, slots: Slots | None,
                route: Route) -> Verdict:
        """A cluster's admitted model call, seated by the pool; if no server of its route may be
        asked, what its shard counted is taken back and it is refused as unavailable."""
        route_keys, route_args = self._keys.route(route)
        seat = seat_of(*self._asked("place", self._place, route_keys, [*route_args, ticket]))
        if seat.placement is not None or seat.waiting:
            return replace(verdict, seat=seat)
        keys = [self._slots(shard, slots)] + [key for limit in limits for key in self._window(shard, limit)]
        self._asked("retract", self._retract, keys, [ticket, *(limit.cost for limit in limits)])
        return Verdict(False, (), 0, unavailable_ms=max(1, seat.retry_ms))

    @staticmethod
    def _asked(operation: str, script: Callable[..., Any], keys: list[str], args: list) -> Any:
        try:
            with span("Redis", operation=operation):
                return script(keys=keys, args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error

    @staticmethod
    def _verdict(reply: list, limits: Sequence[Limit], route: Route | None) -> Verdict:
        allowed, retry_after_ms, unavailable_ms, slots_full = (int(value) for value in reply[:4])
        if unavailable_ms:
            return Verdict(False, (), 0, unavailable_ms=unavailable_ms)
        seat, counts = seat_of(*reply[4:9]), reply[9:]
        states = []
        for index, limit in enumerate(limits):
            used, reset_after_ms = int(counts[2 * index]), int(counts[2 * index + 1])
            counted = limit.cost if allowed and limit.cost > 0 else 0
            if counted and not reset_after_ms:
                reset_after_ms = limit.window_ms  # this request is the oldest one now
            states.append(LimitState(limit.limit, max(0, limit.limit - used - counted), max(0, reset_after_ms)))
        return Verdict(bool(allowed), tuple(states), int(retry_after_ms), slots_full=bool(slots_full),
                       seat=seat if allowed and route is not None else None)

    def _slots(self, shard: str, slots: Slots | None) -> str:
        """The slots' sorted set; with none asked for, a name no script writes to."""
        return shard + LIMITS + slots.key if slots else shard + NOWHERE

    @staticmethod
    def _window(shard: str, limit: Limit) -> list[str]:
        """The limit's keys: its sorted set of requests and the running total of their costs."""
        window = shard + LIMITS + limit.key
        return [window, window + ":total"]
