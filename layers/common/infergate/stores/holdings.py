"""The servers' holdings (llm/catalog.py), shared in Redis: one hash, a field per server (its
models, those loaded, whether it answered) and when they were found."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import redis

from infergate.domain.errors import ServiceUnavailable
from infergate.domain.model_server import ModelEntry
from infergate.domain.pool import Holdings
from infergate.stores.redis_keys import pool as pool_keys

HOLDINGS = "holdings"  # under the pool's tag
REFRESHING = "holdings:refreshing"
_AT = "_at"  # the field holding when the holdings were found (epoch ms)


class RedisHoldings:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client, self._key, self._lock = client, pool_keys(prefix) + HOLDINGS, pool_keys(prefix) + REFRESHING

    def read(self) -> tuple[dict[str, Holdings], float] | None:
        try:
            stored = self._client.hgetall(self._key)
        except redis.RedisError as error:
            raise ServiceUnavailable("The servers' holdings cannot be read: Redis cannot be reached.") from error
        at = stored.pop(_AT.encode(), None)
        if at is None:
            return None
        holdings = {name.decode(): _holdings(json.loads(value)) for name, value in stored.items()}
        return holdings, max(0.0, time.time() - int(at) / 1000)

    def claim_refresh(self, seconds: float) -> bool:
        try:
            return bool(self._client.set(self._lock, 1, nx=True, px=int(seconds * 1000)))
        except redis.RedisError as error:
            raise ServiceUnavailable("The servers' holdings cannot be refreshed: Redis cannot be reached.") from error

    def write(self, holdings: Mapping[str, Holdings]) -> None:
        fields = {name: json.dumps(_document(held)) for name, held in holdings.items()}
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key)
                pipe.hset(self._key, mapping={**fields, _AT: int(time.time() * 1000)})
                pipe.execute()
        except redis.RedisError as error:
            raise ServiceUnavailable("The servers' holdings cannot be shared: Redis cannot be reached.") from error


def _document(held: Holdings) -> dict:
    models = None if held.models is None else [
        [entry.name, entry.modified_at.isoformat() if entry.modified_at else None] for entry in held.models]
    return {"models": models, "loaded": sorted(held.loaded), "reachable": held.reachable}


def _holdings(document: dict) -> Holdings:
    from datetime import datetime

    models = None if document.get("models") is None else tuple(
        ModelEntry(name, datetime.fromisoformat(at) if at else None) for name, at in document["models"])
    return Holdings(models, frozenset(document.get("loaded") or ()), bool(document.get("reachable", True)))
