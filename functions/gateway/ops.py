"""Operator endpoints, and the console: GET /health (liveness: the function answers, nothing else is asked),
GET /health/ready (readiness: MongoDB, Redis and the model server each answer in time),
GET /metrics (request totals, or with `Accept: text/plain` or `?format=prometheus` every
instance's request metrics in Prometheus' text format) and GET /openapi.json (the API's
OpenAPI document, which the common layer ships: read on the first request an instance
serves, then kept); GET /console and GET /console/assets/{asset}, the web console (api/console.py).

GET /metrics is open unless METRICS_TOKEN is set; then it wants
`Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api import ops
from infergate.api.app import create_app, lambda_entrypoint
from infergate.bootstrap import instance

services = instance()
app = create_app(services)


@app.get("/health")
def health() -> Response:
    return ops.health()


@app.get("/health/ready")
def ready() -> Response:
    return ops.readiness(services.readiness.latest())


@app.get("/metrics")
def metrics() -> Response:
    return ops.metrics(app)


@app.get("/openapi.json")
def openapi() -> Response:
    return ops.openapi_document()


@app.get("/console")
def console_page() -> Response:
    from infergate.api import console  # imported by the console's first request, not by every cold start

    settings = services.settings
    return console.page(oidc_issuer=settings.console_oidc_issuer, oidc_client_id=settings.console_oidc_client_id)


@app.get("/console/assets/<asset>")
def console_asset(asset: str) -> Response:
    from infergate.api import console

    return console.asset(asset)


lambda_handler = lambda_entrypoint(app)
