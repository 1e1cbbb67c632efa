"""The model routes: InferGate's own POST /v1/chat; OpenAI's POST /v1/chat/completions, POST
/v1/completions, POST /v1/responses (and a kept response's GET, DELETE and input items), POST
/v1/embeddings, GET /v1/models and GET /v1/models/{model}; Anthropic's POST /v1/messages and
/v1/messages/count_tokens. Every chat route is rate-limited, quota-reserved and metered alike,
and honours an Idempotency-Key.

The chat routes stream (API Gateway's streaming integration, STREAMED): with `stream: true`
the answer leaves as server-sent events as the model produces it, and every other answer on
them leaves whole, in a streamed response.

Each API's translator is imported by the routes that use it, so a cold start serving /v1/chat
does not pay for the others' shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aws_lambda_powertools.event_handler import Response

from infergate.api import chat as own
from infergate.api.app import (
    admitted_principal,
    create_app,
    current_principal,
    json_response,
    report_ignored,
    with_limit_headers,
)
from infergate.api.idempotency import idempotently, idempotently_streamed
from infergate.api.streaming import streamed, streaming_entrypoint
from infergate.bootstrap import instance

services = instance()
app = create_app(services)
STREAMED = frozenset({"/v1/chat", "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"})
# Kept from a streamed answer's deadline, so that it ends with its error event before the function's time does.
STREAM_MARGIN_SECONDS = 3.0


def _answered(principal, task, shape: Callable, *, report: Callable = tuple) -> Callable[[], Response]:
    """The chat's answer, given whole, shaped by `shape`; what was not applied named as `report`
    names it in the API's words."""
    def respond() -> Response:
        result = services.inference.chat(principal, task, request_id=app.context["request_id"],
                                         on_admitted=with_limit_headers(app))
        report_ignored(app, report(result.ignored))
        return json_response(shape(result))

    return respond


def _streamed(principal, task, events: Callable[..., Iterator[str]], *, report: Callable = tuple) -> Response:
    """The chat streamed, each piece leaving as the model produces it, shaped by `events`."""
    def respond() -> Response:
        seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000 - STREAM_MARGIN_SECONDS
        stream = services.inference.stream(principal, task, request_id=app.context["request_id"],
                                           timeout=max(1.0, seconds_left), on_admitted=with_limit_headers(app),
                                           watch=services.authenticator.watch(principal))
        report_ignored(app, report(stream.ignored))
        return streamed(events(stream), complete=lambda: stream.result is not None)

    return idempotently_streamed(app, principal, respond)


@app.post("/v1/chat")
def chat() -> Response:
    principal = current_principal(app)
    task, stream = own.request(app)
    if stream:
        return _streamed(principal, task, own.event_stream)
    return idempotently(app, principal, _answered(principal, task, own.response))


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    from infergate.api import openai

    principal = current_principal(app)
    request, task = openai.chat_request(app)
    if request.stream:
        return _streamed(principal, task, lambda stream: openai.event_stream(stream, include_usage=request.include_usage))
    return idempotently(app, principal, _answered(principal, task, openai.completion))


@app.post("/v1/completions")
def completions() -> Response:
    from infergate.api import completions

    principal = current_principal(app)
    request, task = completions.request(app)
    if request.stream:
        return _streamed(principal, task,
                         lambda stream: completions.event_stream(stream, include_usage=request.include_usage))
    return idempotently(app, principal, _answered(principal, task, completions.completion))


def _anthropic_error(error):
    from infergate.api import anthropic

    return anthropic.error_body(error)


app.error_bodies.update(dict.fromkeys(("/v1/messages", "/v1/messages/count_tokens"), _anthropic_error))


@app.post("/v1/messages")
def messages() -> Response:
    from infergate.api import anthropic

    principal = current_principal(app)
    request, task = anthropic.request(app)
    thoughts = request.thoughts_shown
    if request.stream:
        return _streamed(principal, task, lambda stream: anthropic.event_stream(stream, thoughts=thoughts))
    return idempotently(app, principal, _answered(principal, task, lambda result: anthropic.message(
        result, thoughts=thoughts)))


@app.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    from infergate.api import anthropic

    admitted_principal(app)
    task = anthropic.count_request(app)
    report_ignored(app, task.ignored)
    return json_response(anthropic.token_count(services.inference.prompt_bound(task)))


@app.post("/v1/responses")
def responses() -> Response:
    from infergate.api import responses

    principal = current_principal(app)
    kept = services.kept_responses
    request, task, context = responses.request(app, lambda response_id: kept.get(principal.user_id, response_id))
    keep = responses.keeper(request, context, kept, principal.user_id)
    if request.stream:
        return _streamed(principal, task, lambda stream: responses.event_stream(stream, request, keep),
                         report=responses.reported)
    return idempotently(app, principal, _answered(
        principal, task, lambda result: responses.answer(result, request, keep), report=responses.reported))


@app.get("/v1/responses/<response_id>")
def kept_response(response_id: str) -> Response:
    from infergate.api import responses

    principal = admitted_principal(app)
    return json_response(responses.kept(services.kept_responses.get(principal.user_id, response_id)))


@app.get("/v1/responses/<response_id>/input_items")
def kept_response_input(response_id: str) -> Response:
    from infergate.api import responses

    principal = admitted_principal(app)
    return json_response(responses.item_list(app, services.kept_responses.get(principal.user_id, response_id)))


@app.delete("/v1/responses/<response_id>")
def forget_response(response_id: str) -> Response:
    from infergate.api import responses

    principal = admitted_principal(app)
    services.kept_responses.forget(principal.user_id, response_id)
    return json_response(responses.deleted(response_id))


@app.post("/v1/embeddings")
def embeddings() -> Response:
    from infergate.api import openai

    principal = current_principal(app)
    request, task = openai.embedding_request(app)
    result = services.inference.embed(principal, task, request_id=app.context["request_id"],
                                      on_admitted=with_limit_headers(app))
    return json_response(openai.embedding_list(result, encoding_format=request.encoding_format))


@app.get("/v1/models")
def models() -> Response:
    from infergate.api import openai

    admitted_principal(app)
    return json_response(openai.model_list(services.models.available()))


@app.get("/v1/models/<model>")
def model(model: str) -> Response:
    from infergate.api import openai

    admitted_principal(app)
    return json_response(openai.model(app, model, services.models.available()))


lambda_handler = streaming_entrypoint(app, routes=STREAMED)
