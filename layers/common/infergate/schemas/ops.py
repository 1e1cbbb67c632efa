"""The operators' routes: health, readiness and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from infergate.schemas.base import Schema


class HealthResponse(Schema):
    status: str
    service: str
    uptime: float
    timestamp: datetime


class DependencyCheck(Schema):
    status: Literal["ok", "failing"]
    latency_ms: float
    error: str | None = None


class ReadinessResponse(Schema):
    status: Literal["ready", "not_ready"]
    # mongodb, redis, and model_server: ok while any server of the pool answers.
    checks: dict[str, DependencyCheck]
    servers: dict[str, DependencyCheck]  # each model server's own, by name


class MemoryUsage(Schema):
    rss_bytes: int
    max_rss_bytes: int


class MetricsQuery(Schema):
    format: Literal["json", "prometheus"] | None = Field(
        None, description="prometheus: the text exposition format (as `Accept: text/plain` asks); json by default.")


class MetricsResponse(Schema):
    totalRequests: int  # noqa: N815 - the field names are part of the public API
    uptime: float
    memoryUsage: MemoryUsage  # noqa: N815
