from __future__ import annotations

from datetime import datetime

from infergate.models.base import Model


class HealthResponse(Model):
    status: str
    service: str
    uptime: float
    timestamp: datetime


class MemoryUsage(Model):
    rss_bytes: int
    max_rss_bytes: int


class MetricsResponse(Model):
    totalRequests: int  # noqa: N815 - the field names are part of the public API
    uptime: float
    memoryUsage: MemoryUsage  # noqa: N815
