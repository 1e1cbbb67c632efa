"""POST /v1/register: a new user and their first API key (limited per source IP)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api import accounts
from infergate.api.app import create_app, lambda_entrypoint, source_ip
from infergate.bootstrap import instance

services = instance()
app = create_app(services)


@app.post("/v1/register")
def register() -> Response:
    request = accounts.registration_request(app)
    return accounts.registered(services.registrar.register(request.email, source_ip=source_ip(app)))


lambda_handler = lambda_entrypoint(app)
