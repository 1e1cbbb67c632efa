"""Operator endpoints: GET /health (liveness) and GET /metrics (request totals)."""

from __future__ import annotations

import os
import resource
import time

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import create_app, json_response, lambda_entrypoint
from infergate.clock import utc_now
from infergate.models.ops import HealthResponse, MemoryUsage, MetricsResponse

STARTED = time.monotonic()
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "infergate")

app = create_app()


def _uptime() -> float:
    return round(time.monotonic() - STARTED, 3)


@app.get("/health")
def health() -> Response:
    return json_response(HealthResponse(status="OK", service=SERVICE, uptime=_uptime(), timestamp=utc_now()))


@app.get("/metrics")
def metrics() -> Response:
    total = wiring.counters().total_requests()
    return json_response(MetricsResponse(totalRequests=total, uptime=_uptime(), memoryUsage=_memory_usage()))


def _memory_usage() -> MemoryUsage:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return MemoryUsage(
        rss_bytes=resident_pages * os.sysconf("SC_PAGE_SIZE"),
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


lambda_handler = lambda_entrypoint(app)
