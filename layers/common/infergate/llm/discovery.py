"""What a model server holds, asked of it: the models it serves and those it has loaded.
Ollama says both (`GET /api/tags`, `GET /api/ps`); an OpenAI-compatible server lists the models
it serves (`GET /v1/models`), which it keeps loaded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from infergate.domain.model_server import ModelEntry
from infergate.domain.pool import OLLAMA, Holdings, Server
from infergate.llm.connections import ModelServerConnections

DISCOVERY_SECONDS = 3.0


def discover(server: Server, connections: ModelServerConnections, *, seconds: float = DISCOVERY_SECONDS) -> Holdings | None:
    """The server's holdings, or None if it could not be asked."""
    try:
        if server.kind == OLLAMA:
            models = tuple(ModelEntry(m["name"], _timestamp(m.get("modified_at")))
                           for m in _listed(connections.get("/api/tags", timeout=seconds), "models"))
            return Holdings(models, _loaded(connections, seconds))
        models = tuple(ModelEntry(m["id"], _from_epoch(m.get("created")))
                       for m in _listed(connections.get("/v1/models", timeout=seconds), "data"))
        return Holdings(models, frozenset(entry.name for entry in models))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _loaded(connections: ModelServerConnections, seconds: float) -> frozenset[str]:
    """The models Ollama has in memory; none known from a server too old to say."""
    try:
        return frozenset(m["name"] for m in _listed(connections.get("/api/ps", timeout=seconds), "models"))
    except OSError:
        return frozenset()


def _listed(body: bytes, field: str) -> list[dict]:
    listed = json.loads(body).get(field) or []
    if not isinstance(listed, list):
        raise ValueError(f"{field} is not a list")
    return listed


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None
