from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class HealthResponse(BaseModel):
    status: str
    service: str
    uptime: float
    timestamp: datetime


class MemoryUsage(BaseModel):
    rss_bytes: int
    max_rss_bytes: int


class MetricsResponse(BaseModel):
    totalRequests: int  # noqa: N815 - the field names are part of the public API
    uptime: float
    memoryUsage: MemoryUsage  # noqa: N815
