"""GET /v1/usage[?period=YYYY-MM]: where the caller stands this month, or stood in a past one."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from infergate import wiring
from infergate.api.app import add_response_headers, create_app, current_principal, lambda_entrypoint
from infergate.clock import utc_now
from infergate.domain.usage import usage_for
from infergate.models.usage import UsageResponse

app = create_app()


@app.get("/v1/usage")
def usage(period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None) -> UsageResponse:
    principal = current_principal(app)
    add_response_headers(app, wiring.rate_limits().admit(principal).headers())
    return usage_for(principal, ledger=wiring.usage_ledger(), now=utc_now(), period=period)


lambda_handler = lambda_entrypoint(app)
