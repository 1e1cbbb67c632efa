"""GET /v1/usage[?period=YYYY-MM]: where the caller stands this month, or stood in a past one."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api import accounts
from infergate.api.app import admit, create_app, current_principal, json_response, lambda_entrypoint
from infergate.bootstrap import instance

services = instance()
app = create_app(services)


@app.get("/v1/usage")
def usage() -> Response:
    principal = current_principal(app)
    query = accounts.usage_query(app)
    admit(app, principal)
    return json_response(accounts.usage_response(services.usage.of(principal, query.period)))


lambda_handler = lambda_entrypoint(app)
