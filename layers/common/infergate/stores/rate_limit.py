"""A sliding-window rate limiter: one Lua script, one Redis round trip per check.

Each admitted request is a member of a sorted set scored by the time it was
admitted. The script drops members older than the window, counts the rest
and admits the request only if the count is below the limit. It runs
atomically on the server and reads the server's clock, so any number of
function instances share one exact count.
"""

from __future__ import annotations

import secrets

import redis

from infergate.domain.ports import RateDecision
from infergate.errors import RateLimiterUnavailable

_SLIDING_WINDOW = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, tonumber(oldest[2]) + window - now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = "infergate:rl:") -> None:
        self._prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, subject: str, *, limit: int, window_ms: int) -> RateDecision:
        member = secrets.token_hex(8)
        try:
            allowed, remaining, reset_after_ms = self._script(keys=[self._prefix + subject], args=[limit, window_ms, member])
        except redis.RedisError as error:
            raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}") from error
        return RateDecision(
            allowed=bool(allowed), limit=limit, remaining=int(remaining), reset_after_ms=max(0, int(reset_after_ms))
        )
