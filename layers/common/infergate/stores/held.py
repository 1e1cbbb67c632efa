"""A request's conclusions (stores/limits.py), held until its metrics are written, so that both
reach Redis in one script: a chat costs two round trips to Redis, its admission and this,
metrics included. A request's access line holds them from its start (observability.
open_access_line), and writing it sends them (prometheus.RequestMetrics.record); anything that
concludes outside a request (a test, a job) concludes at once. Nothing here imports a driver, so the
cold path pays nothing for it."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_held: ContextVar[list[Any] | None] = ContextVar("held_conclusions", default=None)


def hold() -> None:
    """Holds the conclusions of the request that begins. What an earlier request left held (its
    metrics were never written) stays held, to go with this one's."""
    _held.set(list(_held.get() or []))


def holding() -> list[Any] | None:
    """Where this request's conclusions wait, or None if they are not held."""
    return _held.get()


def taken() -> list[Any]:
    """The held conclusions, no longer held."""
    items = _held.get() or []
    _held.set(None)
    return items
