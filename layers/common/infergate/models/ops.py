from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from infergate.models.base import Model

if TYPE_CHECKING:
    from infergate.readiness import Readiness


class HealthResponse(Model):
    status: str
    service: str
    uptime: float
    timestamp: datetime


class DependencyCheck(Model):
    status: Literal["ok", "failing"]
    latency_ms: float
    error: str | None = None


class ReadinessResponse(Model):
    status: Literal["ready", "not_ready"]
    checks: dict[str, DependencyCheck]

    @classmethod
    def of(cls, readiness: Readiness) -> ReadinessResponse:
        return cls(
            status="ready" if readiness.ready else "not_ready",
            checks={name: DependencyCheck(status="ok" if check.ok else "failing", latency_ms=check.latency_ms,
                                          error=check.error)
                    for name, check in readiness.checks.items()},
        )


class MemoryUsage(Model):
    rss_bytes: int
    max_rss_bytes: int


class MetricsQuery(Model):
    format: Literal["json", "prometheus"] | None = Field(
        None, description="prometheus: the text exposition format (as `Accept: text/plain` asks); json by default.")


class MetricsResponse(Model):
    totalRequests: int  # noqa: N815 - the field names are part of the public API
    uptime: float
    memoryUsage: MemoryUsage  # noqa: N815
