"""The model server's circuit breaker, shared by every function instance through Redis.

  closed     calls go through; each failure adds to a count of consecutive failures,
             and a success clears it. At the threshold the breaker opens.
  open       for `open_ms`, every call is refused at once (503 with Retry-After).
  half-open  then one call at a time is let through as a probe: its success
             closes the breaker, its failure opens it again.

Each transition is one Lua script, atomic on the server and on its clock. If
Redis cannot be asked, calls go through: the breaker protects the model
server, and without it the gateway still works.
"""

from __future__ import annotations

import redis

from infergate.domain.ports import BreakerPass
from infergate.errors import ServiceUnavailable
from infergate.observability import logger

_BEFORE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, 0, 0} end
local reopens = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if state == 'open' and now < reopens then return {0, reopens - now, 0} end
local probing = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probing > now then return {0, probing - now, 0} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[1]))
return {1, 0, 1}
"""

_AFTER = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ok, probe = ARGV[1] == '1', ARGV[2] == '1'
local threshold, open_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ok then
  if state == 'closed' or probe then
    redis.call('DEL', KEYS[1])
  end
  return 'closed'
end
if probe or state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + open_ms, 'probe_until', 0, 'failures', 0)
  return 'open'
end
if state == 'open' then return 'open' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + open_ms, 'failures', 0)
  return 'open'
end
return 'closed'
"""

_ABANDON = """
if redis.call('HGET', KEYS[1], 'state') == 'half_open' then redis.call('HSET', KEYS[1], 'probe_until', 0) end
return 1
"""


class RedisCircuitBreaker:
    def __init__(self, client: redis.Redis, *, failures: int, open_seconds: float, probe_seconds: float,
                 key: str = "infergate:breaker:model-server") -> None:
        self._key = key
        self._failures = failures
        self._open_ms = int(open_seconds * 1000)
        self._probe_ms = int(probe_seconds * 1000)
        self._before = client.register_script(_BEFORE)
        self._after = client.register_script(_AFTER)
        self._abandon = client.register_script(_ABANDON)

    def before_call(self) -> BreakerPass:
        try:
            allowed, wait_ms, probe = self._before(keys=[self._key], args=[self._probe_ms])
        except redis.RedisError:
            logger.warning("circuit breaker unavailable (Redis); calling the model server")
            return BreakerPass()
        if not allowed:
            retry_after = max(1, -(-int(wait_ms) // 1000))
            raise ServiceUnavailable(
                f"The model server is failing; the gateway is giving it a rest. Retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
        return BreakerPass(probe=bool(probe))

    def after_call(self, passage: BreakerPass, *, ok: bool) -> None:
        try:
            state = self._after(keys=[self._key], args=[int(ok), int(passage.probe), self._failures, self._open_ms])
        except redis.RedisError:
            return
        if state == b"open" and not ok:
            logger.warning("model server circuit breaker is open")

    def abandon(self, passage: BreakerPass) -> None:
        if not passage.probe:
            return
        try:
            self._abandon(keys=[self._key])
        except redis.RedisError:
            pass  # the probe's slot expires by itself
