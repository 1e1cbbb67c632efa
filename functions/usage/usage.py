"""GET /v1/usage[?period=YYYY-MM]: where the caller stands this month, or stood in a past one."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import (
    add_response_headers,
    create_app,
    current_principal,
    json_response,
    lambda_entrypoint,
    parse_query,
)
from infergate.clock import utc_now
from infergate.domain.usage import usage_for
from infergate.models.usage import UsageQuery, UsageResponse

app = create_app()


@app.get("/v1/usage")
def usage() -> Response:
    principal = current_principal(app)
    query = parse_query(app, UsageQuery)
    add_response_headers(app, wiring.admission().admit(principal).headers())
    standing = usage_for(principal, ledger=wiring.usage_ledger(), now=utc_now(), period=query.period)
    return json_response(UsageResponse.of(standing))


lambda_handler = lambda_entrypoint(app)
