"""POST /v1/chat: one rate-limited, quota-reserved, metered chat with the model."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import add_response_headers, create_app, current_principal, json_response, lambda_entrypoint, parse_body
from infergate.models.chat import ChatRequest

app = create_app()


@app.post("/v1/chat")
def chat() -> Response:
    principal = current_principal(app)
    request = parse_body(app, ChatRequest)
    answer = wiring.chat_service().chat(
        principal, request, request_id=app.context["request_id"],
        on_admitted=lambda admission: add_response_headers(app, admission.headers()),
    )
    return json_response(answer)


lambda_handler = lambda_entrypoint(app)
