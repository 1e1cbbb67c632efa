"""GET /v1/usage: where the caller stands this month."""

from __future__ import annotations

from infergate import wiring
from infergate.api.app import create_app, current_principal, lambda_entrypoint
from infergate.clock import utc_now
from infergate.domain.usage import current_usage
from infergate.models.usage import UsageResponse

app = create_app()


@app.get("/v1/usage")
def usage() -> UsageResponse:
    return current_usage(current_principal(app), ledger=wiring.usage_ledger(), now=utc_now())


lambda_handler = lambda_entrypoint(app)
