"""Sliding-window rate limits: one Lua script, one Redis round trip per check.

Each admitted request is a member `<ticket>:<cost>` of a sorted set scored by
the time it was admitted (a request costs 1 under a requests-per-minute
limit, its tokens under a tokens-per-minute one). The script drops members
older than the window, sums the rest and admits the request only if it fits
every limit it is checked against; then it counts it under all of them, or
under none. It runs atomically on the server and reads the server's clock,
so any number of function instances share one exact count: with a limit of
N, N concurrent requests pass and the next is refused, and no window of the
limit's length ever holds more than N.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from infergate.domain.ports import Limit, LimitState, RateDecision
from infergate.errors import RateLimiterUnavailable

_ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ticket = ARGV[1]
local allowed = 1
local retry = 0
local reply = {}
local function cost_of(member) return tonumber(string.match(member, ':(%d+)$')) end
for i, key in ipairs(KEYS) do
  local limit, window, cost = tonumber(ARGV[i * 3 - 1]), tonumber(ARGV[i * 3]), tonumber(ARGV[i * 3 + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local used = 0
  for j = 1, #entries, 2 do used = used + cost_of(entries[j]) end
  local reset = 0
  if #entries > 0 then reset = tonumber(entries[2]) + window - now end
  if used + cost > limit then
    allowed = 0
    local wait, freed = window, 0
    for j = 1, #entries, 2 do
      freed = freed + cost_of(entries[j])
      if used + cost - freed <= limit then
        wait = tonumber(entries[j + 1]) + window - now
        break
      end
    end
    if wait > retry then retry = wait end
  end
  reply[#reply + 1] = used
  reply[#reply + 1] = reset
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[i * 3 + 1])
    if cost > 0 then
      redis.call('ZADD', key, now, ticket .. ':' .. cost)
      redis.call('PEXPIRE', key, tonumber(ARGV[i * 3]))
    end
  end
end
table.insert(reply, 1, retry)
table.insert(reply, 1, allowed)
return reply
"""

_ADJUST = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('ZADD', KEYS[1], score, ARGV[3]) end
return 1
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = "infergate:rl:") -> None:
        self._prefix = prefix
        self._admit = client.register_script(_ADMIT)
        self._adjust = client.register_script(_ADJUST)

    def admit(self, limits: Sequence[Limit], *, ticket: str) -> RateDecision:
        args: list[str | int] = [ticket]
        for limit in limits:
            args += [limit.limit, limit.window_ms, limit.cost]
        try:
            allowed, retry_after_ms, *counts = self._admit(keys=[self._prefix + limit.key for limit in limits], args=args)
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        states = []
        for index, limit in enumerate(limits):
            used, reset_after_ms = int(counts[2 * index]), int(counts[2 * index + 1])
            counted = limit.cost if allowed and limit.cost > 0 else 0
            if counted and not reset_after_ms:
                reset_after_ms = limit.window_ms  # this request is the oldest one now
            states.append(LimitState(limit.limit, max(0, limit.limit - used - counted), max(0, reset_after_ms)))
        return RateDecision(bool(allowed), tuple(states), int(retry_after_ms))

    def adjust(self, limit: Limit, *, ticket: str, cost: int) -> None:
        try:
            self._adjust(keys=[self._prefix + limit.key], args=[f"{ticket}:{limit.cost}", cost, f"{ticket}:{cost}"])
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
