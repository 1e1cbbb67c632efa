"""POST /v1/register: a new user and their first API key (limited per source IP)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body

from infergate import wiring
from infergate.api.app import create_app, lambda_entrypoint, source_ip
from infergate.clock import utc_now
from infergate.config import get_settings
from infergate.domain import accounts
from infergate.models.accounts import RegisterRequest, RegisterResponse

app = create_app()


@app.post("/v1/register")
def register(request: Annotated[RegisterRequest, Body()]) -> Response[RegisterResponse]:
    wiring.rate_limits().admit_registration(source_ip(app), per_hour=get_settings().register_limit_per_hour)
    account = accounts.register(request.email, plan=wiring.plans().default, store=wiring.account_store(), now=utc_now())
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=account)


lambda_handler = lambda_entrypoint(app)
