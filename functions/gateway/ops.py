"""Operator endpoints: GET /health (liveness: the function answers, nothing else is asked),
GET /health/ready (readiness: MongoDB, Redis and the model server each answer in time),
GET /metrics (request totals, or with `Accept: text/plain` or `?format=prometheus` every
instance's request metrics in Prometheus' text format) and GET /openapi.json (the API's OpenAPI document, which the
common layer ships: read on the first request an instance serves, then kept).

GET /metrics is open unless METRICS_TOKEN is set; then it wants
`Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import functools
import hmac
import os
import resource
import time

from aws_lambda_powertools.event_handler import Response, content_types

from infergate import wiring
from infergate.api.app import create_app, json_response, lambda_entrypoint, parse_query
from infergate.clock import utc_now
from infergate.config import get_settings, metrics_token
from infergate.errors import Unauthorized
from infergate.models.ops import HealthResponse, MemoryUsage, MetricsQuery, MetricsResponse, ReadinessResponse
from infergate.observability import logger

STARTED = time.monotonic()
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "infergate")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

app = create_app()


def _uptime() -> float:
    return round(time.monotonic() - STARTED, 3)


@app.get("/health")
def health() -> Response:
    return json_response(HealthResponse(status="OK", service=SERVICE, uptime=_uptime(), timestamp=utc_now()))


@app.get("/health/ready")
def ready() -> Response:
    readiness = wiring.readiness().latest()
    if not readiness.ready:
        logger.warning("not ready", extra={"failing": [name for name, c in readiness.checks.items() if not c.ok]})
    response = json_response(ReadinessResponse.of(readiness), status=200 if readiness.ready else 503)
    if not readiness.ready:
        response.headers["Retry-After"] = "5"
    return response


@app.get("/metrics")
def metrics() -> Response:
    _require_the_metrics_token()
    if _wants_prometheus():
        from infergate import prometheus

        exposition = prometheus.render(wiring.counters().series(), breaker_open=wiring.admission().breaker_open())
        return Response(status_code=200, content_type=PROMETHEUS_TEXT, body=exposition)
    total = wiring.counters().total_requests()
    return json_response(MetricsResponse(totalRequests=total, uptime=_uptime(), memoryUsage=_memory_usage()))


@app.get("/openapi.json")
def openapi() -> Response:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_openapi_document())


@functools.cache
def _openapi_document() -> str:
    """The document devkit/openapi.py generated into the infergate package (`make openapi`)."""
    from importlib.resources import files

    return files("infergate").joinpath("openapi.json").read_text(encoding="utf-8")


def _wants_prometheus() -> bool:
    """`?format=prometheus`, or a scraper's Accept (Prometheus sends text/plain among others)."""
    asked = parse_query(app, MetricsQuery).format
    if asked is not None:
        return asked == "prometheus"
    return "text/plain" in app.current_event.headers.get("accept", "")


def _require_the_metrics_token() -> None:
    token = metrics_token(get_settings())
    if not token:
        return
    presented = app.current_event.headers.get("authorization", "")
    scheme, _, credential = presented.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
        raise Unauthorized("GET /metrics wants 'Authorization: Bearer <METRICS_TOKEN>'.",
                           headers={"WWW-Authenticate": "Bearer"})


def _memory_usage() -> MemoryUsage:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return MemoryUsage(
        rss_bytes=resident_pages * os.sysconf("SC_PAGE_SIZE"),
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


lambda_handler = lambda_entrypoint(app)
