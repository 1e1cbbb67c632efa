"""Builds each function's resolver and Lambda entry point the same way.

A function's resolver carries the instance's services (bootstrap). Translators
parse its input with `parse_body` / `parse_query` (pydantic schemas) and shape
answers from schemas, which leave as JSON. Every response leaves with an
`x-request-id` header and, when it is an error, a body of OpenAI's form
`{"error": {"message", "type", "param", "code"}}`, on every route.

Validation is pydantic's own rather than the resolver's OpenAPI layer: the
latter builds every route's schemas at import, which costs each function's
cold start more than the rest of its code.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit

from infergate.api.caller import caller_from, refusal_from
from infergate.api.errors import RequestTooLarge, body_of, headers_of, rate_limit_headers, status_for
from infergate.api.request_id import HEADER as REQUEST_ID_HEADER
from infergate.api.request_id import request_id_of
from infergate.api.validation import validated
from infergate.domain.errors import AccountSuspended, Forbidden, InferGateError, InvalidRequest, NotFound, Unauthorized
from infergate.domain.principal import Operator, Principal
from infergate.observability import (
    logger,
    metrics,
    note,
    open_access_line,
    record_access_lines_with,
    request_counted,
    write_access_line,
)

if TYPE_CHECKING:
    from infergate.bootstrap import Services
    from infergate.domain.admission import Admission
    from infergate.schemas.base import Schema

S = TypeVar("S", bound="Schema")
# Marks an event whose body was not UTF-8.
NOT_UTF8 = "infergateBodyNotUtf8"


class App(APIGatewayRestResolver):
    """A function's resolver, with the services of the function instance it runs in."""

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        # The error body of routes whose API has its own (Anthropic's), by resource; OpenAI's elsewhere.
        self.error_bodies: dict[str, Callable[[InferGateError], Schema]] = {}

    def error_body(self, error: InferGateError) -> Schema:
        event = getattr(self, "current_event", None)
        shape = self.error_bodies.get(event.resource if event is not None else "", body_of)
        return shape(error)


def error_response(error: InferGateError, body: Schema | None = None) -> Response:
    return Response(status_code=status_for(error), content_type=content_types.APPLICATION_JSON,
                    body=(body or body_of(error)).model_dump_json(), headers=headers_of(error))


def json_response(schema: Schema, *, status: int = 200) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=schema.model_dump_json())


def create_app(services: Services) -> App:
    app = App(services)

    @app.exception_handler(InferGateError)
    def _known_error(error: InferGateError) -> Response:
        note(outcome=error.code, limit=getattr(error, "limit", None))
        if status_for(error) >= 500:
            logger.warning("request failed", extra={"error_code": error.code, "status": status_for(error)})
        return error_response(error, app.error_body(error))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        note(outcome="not_found")
        return error_response(NotFound("No such route."))

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response:
        logger.exception("unhandled error")
        note(outcome="internal_error")
        error = InferGateError(f"Internal error; quote request id {app.context.get('request_id')}.")
        return error_response(error, app.error_body(error))

    return app


def parse_body(app: App, schema: type[S], *, optional: bool = False) -> S:
    """The request body as `schema`, or 400 invalid_request saying what is wrong. With
    `optional`, no body at all reads as `{}`.

    Strictly: JSON's types are taken as they are, never converted ("10" is not 10,
    true is not 1, "yes" is not true)."""
    if app.current_event.get(NOT_UTF8):
        raise InvalidRequest("The request body must be UTF-8.")
    body = app.current_event.body or ""
    limit = app.services.settings.max_request_bytes
    if len(body) > limit // 4 and len(body.encode()) > limit:  # a character is at most 4 bytes
        raise RequestTooLarge(f"The request body may be at most {limit} bytes (MAX_REQUEST_BYTES).")
    return validated(lambda data: schema.model_validate_json(data, strict=True),
                      "{}" if optional and not body.strip() else body)


def parse_query(app: App, schema: type[S]) -> S:
    """The query string as `schema`, or 400 invalid_request saying what is wrong."""
    return validated(schema.model_validate, app.current_event.query_string_parameters or {})


def add_response_headers(app: App, headers: dict[str, str]) -> None:
    """Headers for this request's response, whatever it turns out to be."""
    app.context["response_headers"].update(headers)


IGNORED_HEADER = "InferGate-Ignored"


def report_ignored(app: App, ignored: tuple[str, ...]) -> None:
    """What the request asked that is not applied (hints a self-hosted model cannot honour), named as its
    fields are, in the InferGate-Ignored header (percent-encoded: a name, a tool's, may come from the body)
    and on the access line."""
    if ignored:
        add_response_headers(app, {IGNORED_HEADER: ", ".join(quote(name, safe="-._~:/[]@!$&'()*+;=") for name in
                                                             dict.fromkeys(ignored))})
        note(ignored=list(dict.fromkeys(ignored)))


def with_limit_headers(app: App) -> Callable[[Admission], None]:
    """What hears of a request's admission: the limits' standing, as headers on its response."""
    return lambda admission: add_response_headers(app, rate_limit_headers(admission.requests, admission.tokens))


def source_ip(app: App) -> str:
    return app.current_event.request_context.identity.source_ip or "unknown"


def current_principal(app: App) -> Principal:
    """The user calling, as the authorizer established it; 403 for an operator's key or a
    suspended account."""
    caller = _caller(app)
    if not isinstance(caller, Principal):
        raise Forbidden("Admin keys are for the admin API (/admin/v1/); use a user's API key here.")
    if caller.suspended:
        raise AccountSuspended("This account is suspended; its keys are refused until an operator reactivates it.")
    return caller


def admitted_principal(app: App) -> Principal:
    """The user calling (current_principal), admitted (`admit`)."""
    return admit(app, current_principal(app))


def admit(app: App, principal: Principal) -> Principal:
    """`principal`, their request counted under their key's requests per minute (429 past it),
    with the limit's headers set on the response."""
    with_limit_headers(app)(app.services.gatekeeper.admit(principal))
    return principal


def current_operator(app: App) -> Operator:
    """The operator calling; 403 for anyone else."""
    caller = _caller(app)
    if not isinstance(caller, Operator):
        raise Forbidden("The admin API needs an admin key (iga_...).")
    return caller


def _caller(app: App) -> Principal | Operator:
    context = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    refusal = refusal_from(context)
    if refusal is not None:
        raise refusal
    try:
        return caller_from(context)
    except (ValueError, KeyError):
        raise Unauthorized("A valid API key is required.") from None


def lambda_entrypoint(app: App) -> Callable[[dict, Any], dict]:
    """The Lambda handler for `app`: logging, metrics and the request id wired in once."""
    record_access_lines_with(lambda line: app.services.request_metrics.record(line))  # Redis is made on first use

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict, context: Any) -> dict:
        request_id = request_id_of(event)
        logger.set_correlation_id(request_id)
        _open_access_line(event)
        # Filled by routes (add_response_headers) and stamped on whatever response leaves,
        # error responses included.
        extra_headers: dict[str, str] = {}
        app.append_context(request_id=request_id, response_headers=extra_headers)
        request_counted.set(False)
        response = app.resolve(_with_text_body(event), context)
        if not request_counted.get():
            app.services.request_metrics.count()  # a request that never reached admission (health, a bad body) counts too
        for name, value in {**extra_headers, REQUEST_ID_HEADER: request_id}.items():
            _stamp_header(response, name, value)
        _count_outcome(response["statusCode"])
        if _header_of(response, "Idempotent-Replayed"):
            note(replayed=True)
        write_access_line(status=response["statusCode"])
        return response

    return handler


def _open_access_line(event: Mapping[str, Any]) -> None:
    context = event.get("requestContext") or {}
    caller = context.get("authorizer") or {}
    open_access_line(route=event.get("resource"), method=event.get("httpMethod"), user_id=caller.get("user_id"),
                     key_id=caller.get("key_id"), api_request_id=context.get("requestId"),
                     source_ip=(context.get("identity") or {}).get("sourceIp"))


def _header_of(response: dict, name: str) -> str | None:
    for headers in (response.get("headers") or {}, {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}):
        for key, value in headers.items():
            if key.lower() == name.lower():
                return value
    return None


def _count_outcome(status: int) -> None:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if status >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif status >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)


def _with_text_body(event: Mapping[str, Any]) -> dict:
    """The event with its body as text: InferGate reads every body as JSON, whatever its
    Content-Type says. Bytes that are not UTF-8 are never reinterpreted: the event says
    so (NOT_UTF8), and parse_body refuses them."""
    if not event.get("isBase64Encoded") or not event.get("body"):
        return dict(event)
    try:
        text = base64.b64decode(event["body"]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return {**event, "body": None, "isBase64Encoded": False, NOT_UTF8: True}
    return {**event, "body": text, "isBase64Encoded": False}


def _stamp_header(response: dict, name: str, value: str) -> None:
    if response.get("multiValueHeaders") is not None:
        response["multiValueHeaders"][name] = [value]
    else:
        response.setdefault("headers", {})[name] = value
