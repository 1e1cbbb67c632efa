"""When each API key was last used: admitting a request notes it (stores/limits.py, at most once
a minute a key), and the keys and admin routes read it here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import redis

from infergate.observability import logger
from infergate.stores.limits import LAST_USED
from infergate.stores.redis_keys import shard


class RedisKeyActivity:
    """When each API key was last used, as admission records it (at most once a minute a key),
    in its user's shard."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client, self._prefix = client, prefix

    def last_used(self, user_id: str, key_ids: Sequence[str]) -> dict[str, datetime]:
        if not key_ids:
            return {}
        try:
            stamps = self._client.hmget(shard(self._prefix, user_id) + LAST_USED, list(key_ids))
        except redis.RedisError:
            logger.warning("when keys were last used is unknown: Redis unavailable")
            return {}
        return {key_id: datetime.fromtimestamp(int(stamp) / 1000, UTC)
                for key_id, stamp in zip(key_ids, stamps, strict=True) if stamp}
