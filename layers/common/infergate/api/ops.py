"""The operators' routes (GET /health, /health/ready, /metrics, /openapi.json): what the
instance knows of itself and its dependencies, as the schemas say it.

GET /metrics is open unless METRICS_TOKEN is set; then it wants
`Authorization: Bearer <METRICS_TOKEN>`. With `Accept: text/plain` or
`?format=prometheus` it answers every instance's request metrics in Prometheus'
text format.
"""

from __future__ import annotations

import functools
import hmac
import os
import resource
import time
from importlib.resources import files
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response, content_types

from infergate.api.app import App, json_response, parse_query
from infergate.domain.errors import ServiceUnavailable, Unauthorized
from infergate.domain.periods import utc_now
from infergate.observability import logger
from infergate.readiness import Check, Readiness
from infergate.schemas.ops import (
    DependencyCheck,
    HealthResponse,
    MemoryUsage,
    MetricsQuery,
    MetricsResponse,
    ReadinessResponse,
)

if TYPE_CHECKING:
    from infergate.bootstrap import Services
    from infergate.domain.pool import ServerState

STARTED = time.monotonic()
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "infergate")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def uptime() -> float:
    return round(time.monotonic() - STARTED, 3)


def health() -> Response:
    return json_response(HealthResponse(status="OK", service=SERVICE, uptime=uptime(), timestamp=utc_now()))


def readiness(readiness: Readiness) -> Response:
    """200 when every dependency answered in time; else 503, naming what fails, with Retry-After."""
    if not readiness.ready:
        logger.warning("not ready", extra={"failing": [name for name, c in readiness.checks.items() if not c.ok]})
    response = json_response(ReadinessResponse(
        status="ready" if readiness.ready else "not_ready",
        checks={name: _dependency(check) for name, check in readiness.checks.items()},
        servers={name: _dependency(check) for name, check in readiness.servers.items()},
    ), status=200 if readiness.ready else 503)
    if not readiness.ready:
        response.headers["Retry-After"] = "5"
    return response


def _dependency(check: Check) -> DependencyCheck:
    return DependencyCheck(status="ok" if check.ok else "failing", latency_ms=check.latency_ms, error=check.error)


def metrics(app: App) -> Response:
    """The request totals, or every instance's request metrics in Prometheus' text format."""
    _require_the_metrics_token(app)
    services = app.services
    if _wants_prometheus(app):
        from infergate import prometheus

        exposition = prometheus.render(services.counters.series(), servers=_server_states(services))
        return Response(status_code=200, content_type=PROMETHEUS_TEXT, body=exposition)
    return json_response(MetricsResponse(totalRequests=services.counters.total_requests(), uptime=uptime(),
                                         memoryUsage=_memory_usage()))


def _server_states(services: Services) -> list[ServerState] | None:
    try:
        return services.server_reports.states()
    except ServiceUnavailable:
        return None


def openapi_document() -> Response:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_document())


@functools.cache
def _document() -> str:
    """The document devkit/openapi.py generated into the infergate package (`make openapi`): read
    on the first request an instance serves, then kept, as it never changes."""
    return files("infergate").joinpath("openapi.json").read_text(encoding="utf-8")


def _wants_prometheus(app: App) -> bool:
    """`?format=prometheus`, or a scraper's Accept (Prometheus sends text/plain among others)."""
    asked = parse_query(app, MetricsQuery).format
    if asked is not None:
        return asked == "prometheus"
    return "text/plain" in app.current_event.headers.get("accept", "")


def _require_the_metrics_token(app: App) -> None:
    token = app.services.metrics_token()
    if not token:
        return
    presented = app.current_event.headers.get("authorization", "")
    scheme, _, credential = presented.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
        raise Unauthorized("GET /metrics wants 'Authorization: Bearer <METRICS_TOKEN>'.", challenge="Bearer")


def _memory_usage() -> MemoryUsage:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return MemoryUsage(
        rss_bytes=resident_pages * os.sysconf("SC_PAGE_SIZE"),
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
