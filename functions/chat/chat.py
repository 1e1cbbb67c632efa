"""The chat routes: InferGate's own POST /v1/chat, and OpenAI's POST /v1/chat/completions,
POST /v1/embeddings, GET /v1/models and GET /v1/models/{model}. Both chat routes are rate-limited, quota-reserved and metered alike,
and honour an Idempotency-Key.

Both chat routes stream (API Gateway's streaming integration, STREAMED): with
`stream: true` the answer leaves as server-sent events as the model produces
it, and every other answer on them leaves whole, in a streamed response.

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
    parse_body,
)
from infergate.api.idempotency import idempotently, idempotently_streamed
from infergate.api.streaming import streamed, streaming_entrypoint
from infergate.errors import NotFound
from infergate.models.chat import ChatRequest, ChatResponse
from infergate.observability import note

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from infergate.domain.chat import ChatResult, ChatStream, ChatTask
    from infergate.domain.principal import Principal

app = create_app()
STREAMED = frozenset({"/v1/chat", "/v1/chat/completions"})
# Kept from a streamed answer's deadline, so that it ends with its error event before the function's time does.
STREAM_MARGIN_SECONDS = 3.0


def _run(principal: Principal, task: ChatTask) -> ChatResult:
    return wiring.chat_service().chat(
        principal, task, request_id=app.context["request_id"],
        on_admitted=lambda admission: add_response_headers(app, admission.headers()),
    )


def _streamed(principal: Principal, task: ChatTask, events: Callable[[ChatStream], Iterator[str]]) -> Response:
    """The chat streamed, each piece leaving as the model produces it, shaped by `events`."""
    def respond() -> Response:
        seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000 - STREAM_MARGIN_SECONDS
        stream = wiring.chat_service().stream(
            principal, task, request_id=app.context["request_id"], timeout=max(1.0, seconds_left),
            on_admitted=lambda admission: add_response_headers(app, admission.headers()),
        )
        return streamed(events(stream), complete=lambda: stream.result is not None)

    return idempotently_streamed(app, principal, respond)


@app.post("/v1/chat")
def chat() -> Response:
    principal = current_principal(app)
    request = parse_body(app, ChatRequest)
    if request.stream:
        from infergate.api.chat import event_stream

        return _streamed(principal, request.task(), event_stream)
    return idempotently(app, principal, lambda: json_response(ChatResponse.of(_run(principal, request.task()))))


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    from infergate.api import openai
    from infergate.models.openai import ChatCompletionRequest

    principal = current_principal(app)
    request = parse_body(app, ChatCompletionRequest)
    task = request.task()
    note(metadata=request.metadata, end_user=request.user)

    if request.stream:
        return _streamed(principal, task, lambda stream: openai.event_stream(stream, include_usage=request.include_usage))
    return idempotently(app, principal, lambda: json_response(openai.completion(_run(principal, task))))


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


lambda_handler = streaming_entrypoint(app, routes=STREAMED)
