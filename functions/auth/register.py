"""POST /v1/register: a new user and their first API key (limited per source IP)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import create_app, json_response, lambda_entrypoint, parse_body, source_ip
from infergate.clock import utc_now
from infergate.config import get_settings
from infergate.domain import accounts
from infergate.models.accounts import RegisterRequest, RegisterResponse

app = create_app()


@app.post("/v1/register")
def register() -> Response:
    request = parse_body(app, RegisterRequest)
    wiring.admission().admit_registration(source_ip(app), per_hour=get_settings().register_limit_per_hour)
    registration = accounts.register(request.email, plan=wiring.plans().default, store=wiring.account_store(), now=utc_now())
    return json_response(RegisterResponse.of(registration), status=201)


lambda_handler = lambda_entrypoint(app)
