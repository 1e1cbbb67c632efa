"""Refused credentials per source address, in Redis, for the authenticator's limit."""

from __future__ import annotations

import redis

from infergate.observability import logger

# Under the key prefix, per source address: refused credentials in its current minute.
FAILED_AUTHENTICATIONS = "authfail:"

# KEYS: the address's count. ARGV: the window, ms. The first failure starts the window; a count
# that somehow lost its expiry gets one again, so that no address is held back for ever.
_COUNT_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return failures
"""


class RedisFailedAuthentications:
    """Refused credentials per source address: at most `per_minute` in a minute that starts
    with the first of them; then the address waits for that minute's end. One round trip
    to count, one to ask. If Redis cannot be asked, nobody waits."""

    def __init__(self, client: redis.Redis, *, prefix: str, per_minute: int) -> None:
        self._client = client
        self._prefix = prefix + FAILED_AUTHENTICATIONS
        self._per_minute = per_minute
        self._count = client.register_script(_COUNT_FAILURE)

    def blocked_for_ms(self, source: str) -> int:
        try:
            failures, ttl_ms = self._client.pipeline(transaction=False).get(self._prefix + source).pttl(
                self._prefix + source).execute()
        except redis.RedisError:
            logger.warning("failed authentications not checked: Redis unavailable")
            return 0
        if failures is None or int(failures) < self._per_minute:
            return 0
        return ttl_ms if ttl_ms > 0 else 60_000

    def add(self, source: str) -> None:
        try:
            self._count(keys=[self._prefix + source], args=[60_000])
        except redis.RedisError:
            logger.warning("failed authentication not counted: Redis unavailable")
