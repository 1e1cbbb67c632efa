"""The model server's models (`GET /api/tags`), kept briefly: what the model policy checks a
request's model against, and what GET /v1/models lists."""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import datetime

from infergate.domain.model_server import ModelEntry
from infergate.llm.connections import ModelServerConnections
from infergate.observability import logger

CATALOG_TIMEOUT_SECONDS = 3.0


class OllamaCatalog:
    """The server's models (`GET /api/tags`), kept for `ttl` seconds; a failure, for less."""

    def __init__(self, connections: ModelServerConnections, *, ttl: float = 30.0, failure_ttl: float = 5.0) -> None:
        self._connections = connections
        self._ttl, self._failure_ttl = ttl, failure_ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[ModelEntry] | None] | None = None

    def models(self) -> list[ModelEntry] | None:
        with self._lock:
            if self._cached and time.monotonic() < self._cached[0]:
                return self._cached[1]
            models = self._fetch()
            self._cached = (time.monotonic() + (self._ttl if models is not None else self._failure_ttl), models)
            return models

    def _fetch(self) -> list[ModelEntry] | None:
        connection = response = None
        try:
            connection = self._connections.take()
            connection.sock.settimeout(CATALOG_TIMEOUT_SECONDS)
            connection.request("GET", f"{self._connections.base_path}/api/tags")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            return [ModelEntry(m["name"], _timestamp(m.get("modified_at"))) for m in json.loads(body).get("models", [])]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError, AttributeError):
            logger.warning("could not list the model server's models")
            return None
        finally:
            if connection is not None:
                if response is not None:
                    self._connections.give_back(connection, response)
                else:
                    connection.close()


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


