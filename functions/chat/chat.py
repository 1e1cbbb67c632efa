"""The chat routes: InferGate's own POST /v1/chat, and OpenAI's POST /v1/chat/completions,
POST /v1/embeddings, GET /v1/models and GET /v1/models/{model}. Both chat routes are rate-limited, quota-reserved and metered alike,
and honour an Idempotency-Key.

The OpenAI shapes are imported by the routes that use them, so a cold start
serving /v1/chat does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import (
    add_response_headers,
    admitted_principal,
    create_app,
    current_principal,
    json_response,
    lambda_entrypoint,
    parse_body,
)
from infergate.api.idempotency import idempotently
from infergate.errors import NotFound
from infergate.models.chat import ChatRequest, ChatResponse
from infergate.observability import logger

if TYPE_CHECKING:
    from infergate.domain.chat import ChatResult, ChatTask
    from infergate.domain.principal import Principal

app = create_app()


def _run(principal: Principal, task: ChatTask) -> ChatResult:
    return wiring.chat_service().chat(
        principal, task, request_id=app.context["request_id"],
        on_admitted=lambda admission: add_response_headers(app, admission.headers()),
    )


@app.post("/v1/chat")
def chat() -> Response:
    principal = current_principal(app)
    request = parse_body(app, ChatRequest)
    return idempotently(app, principal, lambda: json_response(ChatResponse.of(_run(principal, request.task()))))


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    from infergate.api import openai
    from infergate.models.openai import ChatCompletionRequest

    principal = current_principal(app)
    request = parse_body(app, ChatCompletionRequest)
    task = request.task()
    if request.metadata:
        logger.info("request metadata", extra={"metadata": request.metadata, "end_user": request.user})

    def respond() -> Response:
        result = _run(principal, task)
        if request.stream:
            return openai.stream_response(result, include_usage=request.include_usage)
        return json_response(openai.completion(result))

    return idempotently(app, principal, respond)


@app.post("/v1/embeddings")
def embeddings() -> Response:
    from infergate.api import openai
    from infergate.models.openai import EmbeddingRequest

    principal = current_principal(app)
    request = parse_body(app, EmbeddingRequest)
    result = wiring.chat_service().embed(
        principal, request.task(), request_id=app.context["request_id"],
        on_admitted=lambda admission: add_response_headers(app, admission.headers()))
    return json_response(openai.embedding_list(result, encoding_format=request.encoding_format))


@app.get("/v1/models")
def models() -> Response:
    from infergate.api import openai

    admitted_principal(app)
    return json_response(openai.model_list(wiring.model_policy().available()))


@app.get("/v1/models/<model>")
def model(model: str) -> Response:
    from infergate.api import openai

    # API Gateway's path parameter is percent-decoded (smollm2%3A135m is smollm2:135m); the path is not.
    name = app.current_event.path_parameters.get("model") or model
    admitted_principal(app)
    entry = next((entry for entry in wiring.model_policy().available() if entry.name == name), None)
    if entry is None:
        raise NotFound(f"The model '{name}' does not exist on this gateway.", code="model_not_found", param="model")
    return json_response(openai.model_card(entry))


lambda_handler = lambda_entrypoint(app)
