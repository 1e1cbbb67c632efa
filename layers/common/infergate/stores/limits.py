"""Admission in Redis: request totals, sliding-window limits, a user's slots and a server's
(stores/pool.py), in one Lua script and one round trip per request; a second script and round
trip concludes the request.

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

from collections.abc import Sequence

import redis

from infergate.domain.admission import Conclusion, Limit, LimitState, Slots, Verdict
from infergate.domain.errors import RateLimiterUnavailable
from infergate.domain.pool import Route
from infergate.observability import logger, request_counted
from infergate.stores.counters import REQUESTS_TOTAL
from infergate.stores.lua import NOW, POOL, RELEASE
from infergate.stores.pool import NOWHERE, RouteKeys, seat_of
from infergate.tracing import span

# Under the key prefix: one sorted set per limit and subject.
LIMITS = "rl:"
LAST_USED = "keys:last_used"  # a hash: key id -> when it was last used, ms, refreshed at most once a minute

# What one window holds: its members leave as the window moves past them, and their costs
# leave its running total, which is recounted if it is ever lost. So a check costs the
# members that leave, not all those in the window.
_WINDOW = """
local function window_used(set, total, window)
  local leaving = redis.call('ZRANGEBYSCORE', set, '-inf', now - window)
  local used = redis.call('GET', total)
  if #leaving > 0 then redis.call('ZREMRANGEBYSCORE', set, '-inf', now - window) end
  if used then
    used = tonumber(used)
    for _, member in ipairs(leaving) do used = used - cost_of(member) end
  else
    used = 0
    for _, member in ipairs(redis.call('ZRANGE', set, 0, -1)) do used = used + cost_of(member) end
  end
  return used
end

-- How long until `cost` more fits under `limit` in a window that holds `used`.
local function wait_for(set, used, cost, limit, window)
  local freed, index = 0, 0
  while true do
    local entry = redis.call('ZRANGE', set, index, index + 63, 'WITHSCORES')
    if #entry == 0 then return window end
    for j = 1, #entry, 2 do
      freed = freed + cost_of(entry[j])
      if used + cost - freed <= limit then return tonumber(entry[j + 1]) + window - now end
    end
    index = index + 64
  end
end
"""

# KEYS: the request total, when each key was last used, the user's slots, then per limit its
#       sorted set and its running total, then the route's keys (POOL), if it is a model call.
# ARGV: ticket, the key used ('' for none), slots (0 for none), slot lease ms, the number of
#       limits, then limit, window ms and cost per limit, then the route's arguments (POOL).
# Returns {allowed, retry_after_ms, unavailable_ms, slots_full, then the seat (kind, server,
#          model, probe, retry ms), then used and reset_ms per limit}.
_ADMIT = NOW + _WINDOW + POOL + """
local ticket, limits = ARGV[1], tonumber(ARGV[5])
redis.call('INCR', KEYS[1])
if ARGV[2] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
  if now - last >= 60000 then redis.call('HSET', KEYS[2], ARGV[2], now) end
end
local route, full, retry = nil, false, nil
if #KEYS > 3 + limits * 2 then
  route = read_route(4 + limits * 2, 6 + limits * 3)
  full, retry = survey(route, ticket)
  local usable = false
  for _, s in ipairs(route.servers) do if s.count ~= nil then usable = true end end
  if not usable then return {0, 0, retry or 1000, 0, 0, '', '', 0, 0} end
end
local allowed, retry_after, reply, used_of = 1, 0, {}, {}
for i = 1, limits do
  local set, total = KEYS[i * 2 + 2], KEYS[i * 2 + 3]
  local limit, window, cost = tonumber(ARGV[i * 3 + 3]), tonumber(ARGV[i * 3 + 4]), tonumber(ARGV[i * 3 + 5])
  local used = window_used(set, total, window)
  used_of[i] = used
  local oldest = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  local reset = 0
  if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  if used + cost > limit then
    allowed = 0
    retry_after = math.max(retry_after, wait_for(set, used, cost, limit, window))
  end
  reply[#reply + 1] = used
  reply[#reply + 1] = reset
end
local slots, slots_full = tonumber(ARGV[3]), 0
if allowed == 1 and slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= slots then
    allowed = 0
    slots_full = 1
  end
end
for i = 1, limits do
  local set, total, window = KEYS[i * 2 + 2], KEYS[i * 2 + 3], tonumber(ARGV[i * 3 + 4])
  local cost = 0
  if allowed == 1 then cost = tonumber(ARGV[i * 3 + 5]) end
  if cost > 0 then redis.call('ZADD', set, now, ticket .. ':' .. cost) end
  redis.call('SET', total, used_of[i] + cost, 'PX', window)
  redis.call('PEXPIRE', set, window)
end
local seat = {0, '', '', 0, 0}
if allowed == 1 then
  if slots > 0 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ticket)
    redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
  end
  if route then seat = place(route, ticket, full, retry) end
end
local head = {allowed, retry_after, 0, slots_full, seat[1], seat[2], seat[3], seat[4], seat[5]}
for _, value in ipairs(reply) do head[#head + 1] = value end
return head
"""

# KEYS: the user's slots, the token limit's sorted set and running total, then RELEASE's keys
#       when the request held a server's slot.
# ARGV: the ticket, whether it held a slot of the user's (0|1), whether its token count is
#       corrected (0|1), the admitted member, the corrected cost and its member, then
#       RELEASE's arguments.
# Returns the server's breaker state, or '' when it held none.
_CONCLUDE = NOW + RELEASE + """
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if score then
    redis.call('ZREM', KEYS[2], ARGV[4])
    local cost = tonumber(ARGV[5])
    if cost > 0 then redis.call('ZADD', KEYS[2], score, ARGV[6]) end
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBY', KEYS[3], cost - cost_of(ARGV[4])) end
  end
end
if #KEYS > 3 then return release(4, 7) end
return ''
"""


class RedisLimitStore:
    def __init__(self, client: redis.Redis, keys: RouteKeys, *, prefix: str) -> None:
        self._client, self._keys = client, keys
        self._limits = prefix + LIMITS
        self._nowhere = prefix + NOWHERE
        self._requests_total = prefix + REQUESTS_TOTAL
        self._last_used = prefix + LAST_USED
        self._admit = client.register_script(_ADMIT)
        self._conclude = client.register_script(_CONCLUDE)

    def admit(self, limits: Sequence[Limit], *, ticket: str, key_id: str = "", slots: Slots | None = None,
              route: Route | None = None) -> Verdict:
        keys = [self._requests_total, self._last_used, self._slots(slots)]
        args: list[str | int | float] = [ticket, key_id, slots.limit if slots else 0, slots.lease_ms if slots else 0,
                                         len(limits)]
        for limit in limits:
            keys += self._window(limit)
            args += [limit.limit, limit.window_ms, limit.cost]
        if route is not None:
            route_keys, route_args = self._keys.route(route)
            keys, args = keys + route_keys, args + route_args
        try:
            with span("Redis", operation="admit"):
                reply = self._admit(keys=keys, args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        request_counted.set(True)
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

    def conclude(self, conclusion: Conclusion) -> None:
        correction = conclusion.token_limit
        keys = [self._slots(conclusion.slots), *(self._window(correction) if correction else [self._nowhere] * 2)]
        args: list[str | int] = [conclusion.ticket, int(conclusion.slots is not None), int(correction is not None),
                                 *((f"{conclusion.ticket}:{correction.cost}", conclusion.tokens,
                                    f"{conclusion.ticket}:{conclusion.tokens}") if correction else ("", 0, ""))]
        departure = conclusion.departure
        if departure is not None:
            release_keys, release_args = self._keys.release(departure, conclusion.ticket)
            keys, args = keys + release_keys, args + release_args
        try:
            with span("Redis", operation="conclude"):
                state = self._conclude(keys=keys, args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        if state == b"open" and departure is not None and departure.healthy is False:
            logger.warning("a model server's circuit breaker is open", extra={"server": departure.placement.server})

    def _slots(self, slots: Slots | None) -> str:
        """The slots' sorted set; with none asked for, a name no script writes to."""
        return self._limits + slots.key if slots else self._nowhere

    def _window(self, limit: Limit) -> list[str]:
        """The limit's keys: its sorted set of requests and the running total of their costs."""
        window = self._limits + limit.key
        return [window, window + ":total"]
