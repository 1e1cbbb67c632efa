"""Admission in Redis: request totals, sliding-window limits and the model server's circuit
breaker, in one Lua script and one round trip per request; a second script and round trip
concludes the request.

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

The circuit breaker, shared by every instance:
  closed     calls go through; each failure adds to a count of consecutive failures,
             and a success clears it. At the threshold the breaker opens.
  open       for `open_ms`, every guarded request is refused at once (503 with Retry-After).
  half-open  then one request at a time is let through as a probe (for at most
             `probe_ms`): its success closes the breaker, its failure opens it again.
A request the breaker refuses counts under no limit; a request a limit refuses
does not take the probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from infergate.domain.admission import Conclusion, Limit, LimitState, Slots, Verdict
from infergate.domain.errors import RateLimiterUnavailable
from infergate.observability import logger, request_counted
from infergate.stores.counters import REQUESTS_TOTAL
from infergate.tracing import span

# Under the key prefix: the breaker, and one sorted set per limit and subject.
BREAKER = "breaker:model-server"
LIMITS = "rl:"
LAST_USED = "keys:last_used"  # a hash: key id -> when it was last used, ms, refreshed at most once a minute

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function cost_of(member) return tonumber(string.match(member, ':(%d+)$')) end
"""

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
"""

# KEYS: the request total, the breaker, when each key was last used, the slots, then per
#       limit its sorted set and its running total.
# ARGV: ticket, guarded (0|1), probe lease ms, the key used ('' for none), slots (0 for
#       none), slot lease ms, then limit, window ms and cost per limit.
# Returns {allowed, retry_after_ms, breaker_retry_ms, probe, slots_full, then used and
#          reset_ms per limit}.
_ADMIT = _NOW + _WINDOW + """
redis.call('INCR', KEYS[1])
if ARGV[4] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
  if now - last >= 60000 then redis.call('HSET', KEYS[3], ARGV[4], now) end
end
local probe = 0
if ARGV[2] == '1' then
  local state = redis.call('HGET', KEYS[2], 'state') or 'closed'
  if state ~= 'closed' then
    local reopens = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
    if state == 'open' and now < reopens then return {0, 0, reopens - now, 0, 0} end
    local probing = tonumber(redis.call('HGET', KEYS[2], 'probe_until') or '0')
    if probing > now then return {0, 0, probing - now, 0, 0} end
    probe = 1
  end
end
local ticket = ARGV[1]
local allowed = 1
local retry = 0
local reply = {}
local limits = (#KEYS - 4) / 2
local used_of = {}
for i = 1, limits do
  local set, total = KEYS[i * 2 + 3], KEYS[i * 2 + 4]
  local limit, window, cost = tonumber(ARGV[i * 3 + 4]), tonumber(ARGV[i * 3 + 5]), tonumber(ARGV[i * 3 + 6])
  local used = window_used(set, total, window)
  used_of[i] = used
  local oldest = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  local reset = 0
  if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  if used + cost > limit then
    allowed = 0
    local wait, freed, index = window, 0, 0
    while true do
      local entry = redis.call('ZRANGE', set, index, index + 63, 'WITHSCORES')
      if #entry == 0 then break end
      local found = false
      for j = 1, #entry, 2 do
        freed = freed + cost_of(entry[j])
        if used + cost - freed <= limit then
          wait = tonumber(entry[j + 1]) + window - now
          found = true
          break
        end
      end
      if found then break end
      index = index + 64
    end
    if wait > retry then retry = wait end
  end
  reply[#reply + 1] = used
  reply[#reply + 1] = reset
end
local slots, slots_full = tonumber(ARGV[5]), 0
if allowed == 1 and slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= slots then
    allowed = 0
    slots_full = 1
  end
end
for i = 1, limits do
  local set, total, window = KEYS[i * 2 + 3], KEYS[i * 2 + 4], tonumber(ARGV[i * 3 + 5])
  local cost = 0
  if allowed == 1 then cost = tonumber(ARGV[i * 3 + 6]) end
  if cost > 0 then redis.call('ZADD', set, now, ticket .. ':' .. cost) end
  redis.call('SET', total, used_of[i] + cost, 'PX', window)
  redis.call('PEXPIRE', set, window)
end
if allowed == 1 then
  if probe == 1 then redis.call('HSET', KEYS[2], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[3])) end
  if slots > 0 then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ticket)
    redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[6]))
  end
else
  probe = 0
end
table.insert(reply, 1, slots_full)
table.insert(reply, 1, probe)
table.insert(reply, 1, 0)
table.insert(reply, 1, retry)
table.insert(reply, 1, allowed)
return reply
"""

# KEYS: the breaker, the slots, then the token limit's sorted set and running total (when its
#       count is corrected).
# ARGV: how the model server did ('ok' | 'fail' | '' when not asked), probe (0|1),
#       failure threshold, open ms, the slot to free ('' for none), then the admitted member,
#       the corrected cost and its member.
_CONCLUDE = _NOW + """
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[2], ARGV[5]) end
if KEYS[3] then
  local score = redis.call('ZSCORE', KEYS[3], ARGV[6])
  if score then
    redis.call('ZREM', KEYS[3], ARGV[6])
    local cost = tonumber(ARGV[7])
    if cost > 0 then redis.call('ZADD', KEYS[3], score, ARGV[8]) end
    if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], cost - cost_of(ARGV[6])) end
  end
end
local outcome, probe = ARGV[1], ARGV[2] == '1'
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if outcome == '' then
  if probe and state == 'half_open' then redis.call('HSET', KEYS[1], 'probe_until', 0) end
  return state
end
if outcome == 'ok' then
  if state == 'closed' or probe then redis.call('DEL', KEYS[1]) end
  return 'closed'
end
if probe or state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[4]), 'probe_until', 0, 'failures', 0)
  return 'open'
end
if state == 'open' then return 'open' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[4]), 'failures', 0)
  return 'open'
end
return 'closed'
"""


class RedisLimitStore:
    def __init__(self, client: redis.Redis, *, prefix: str, breaker_failures: int, breaker_open_seconds: float,
                 breaker_probe_seconds: float) -> None:
        self._client = client
        self._limits = prefix + LIMITS
        self._breaker = prefix + BREAKER
        self._requests_total = prefix + REQUESTS_TOTAL
        self._last_used = prefix + LAST_USED
        self._failures = breaker_failures
        self._open_ms = int(breaker_open_seconds * 1000)
        self._probe_ms = int(breaker_probe_seconds * 1000)
        self._admit = client.register_script(_ADMIT)
        self._conclude = client.register_script(_CONCLUDE)

    def admit(self, limits: Sequence[Limit], *, ticket: str, guarded: bool, key_id: str = "",
              slots: Slots | None = None) -> Verdict:
        args: list[str | int] = [ticket, int(guarded), self._probe_ms, key_id,
                                 slots.limit if slots else 0, slots.lease_ms if slots else 0]
        for limit in limits:
            args += [limit.limit, limit.window_ms, limit.cost]
        keys = [self._requests_total, self._breaker, self._last_used, self._slots(slots)]
        for limit in limits:
            keys += self._window(limit)
        try:
            with span("Redis", operation="admit"):
                allowed, retry_after_ms, breaker_retry_ms, probe, slots_full, *counts = self._admit(keys=keys, args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        request_counted.set(True)
        if breaker_retry_ms:
            return Verdict(False, (), 0, breaker_retry_ms=int(breaker_retry_ms))
        states = []
        for index, limit in enumerate(limits):
            used, reset_after_ms = int(counts[2 * index]), int(counts[2 * index + 1])
            counted = limit.cost if allowed and limit.cost > 0 else 0
            if counted and not reset_after_ms:
                reset_after_ms = limit.window_ms  # this request is the oldest one now
            states.append(LimitState(limit.limit, max(0, limit.limit - used - counted), max(0, reset_after_ms)))
        return Verdict(bool(allowed), tuple(states), int(retry_after_ms), probe=bool(probe),
                                 slots_full=bool(slots_full))

    def conclude(self, conclusion: Conclusion) -> None:
        outcome = {True: "ok", False: "fail", None: ""}[conclusion.model_healthy]
        keys = [self._breaker, self._slots(conclusion.slots)]
        args: list[str | int] = [outcome, int(conclusion.probe), self._failures, self._open_ms,
                                 conclusion.ticket if conclusion.slots else ""]
        if conclusion.token_limit is not None:
            keys += self._window(conclusion.token_limit)
            args += [f"{conclusion.ticket}:{conclusion.token_limit.cost}", conclusion.tokens,
                     f"{conclusion.ticket}:{conclusion.tokens}"]
        try:
            with span("Redis", operation="conclude"):
                state = self._conclude(keys=keys, args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        if state == b"open" and conclusion.model_healthy is False:
            logger.warning("model server circuit breaker is open")

    def breaker_open(self) -> bool:
        """Whether the breaker is open or letting a probe through (not closed)."""
        try:
            return (self._client.hget(self._breaker, "state") or b"closed") != b"closed"
        except redis.RedisError as error:
            raise RateLimiterUnavailable("Redis cannot be reached.") from error

    def _slots(self, slots: Slots | None) -> str:
        """The slots' sorted set; with none asked for, a name no script writes to."""
        return self._limits + (slots.key if slots else "slots:-")

    def _window(self, limit: Limit) -> list[str]:
        """The limit's keys: its sorted set of requests and the running total of their costs."""
        window = self._limits + limit.key
        return [window, window + ":total"]
