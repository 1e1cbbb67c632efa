"""POST /v1/chat: one rate-limited, quota-reserved, metered chat with the model."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body

from infergate import wiring
from infergate.api.app import add_response_headers, create_app, current_principal, lambda_entrypoint
from infergate.models.chat import ChatRequest, ChatResponse

app = create_app()


@app.post("/v1/chat")
def chat(request: Annotated[ChatRequest, Body()]) -> ChatResponse:
    return wiring.chat_service().chat(
        current_principal(app), request, request_id=app.context["request_id"],
        on_admitted=lambda admission: add_response_headers(app, admission.headers()),
    )


lambda_handler = lambda_entrypoint(app)
