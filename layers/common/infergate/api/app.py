"""Builds each function's resolver and Lambda entry point the same way.

Every response leaves with an `x-request-id` header and, when it is an
error, a body of the form `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit

from infergate.api.request_id import HEADER as REQUEST_ID_HEADER
from infergate.api.request_id import request_id_of
from infergate.errors import InferGateError, Unauthorized
from infergate.models.errors import ErrorBody
from infergate.models.principal import Principal
from infergate.observability import logger, metrics, tracer
from infergate.wiring import count_request


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody.of(code, message).model_dump_json(),
        headers=headers,
    )


def create_app() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(InferGateError)
    def _known_error(error: InferGateError) -> Response:
        if error.status >= 500:
            logger.warning("request failed", extra={"error_code": error.code, "status": error.status})
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        return error_response(400, "invalid_request", describe_validation_errors(error.errors()))

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        return error_response(404, "not_found", "No such route.")

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", f"Internal error; quote request id {app.context.get('request_id')}.")

    return app


_FIELD = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,6})$")


def describe_validation_errors(errors: Any) -> str:
    """A short, human sentence naming each bad field, never echoing the input itself."""
    parts = []
    for error in list(errors)[:5]:
        if error.get("type") == "json_invalid":
            return "The request body must be valid JSON."
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body" and _FIELD.match(str(part)))
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "The request is invalid."


def add_response_headers(app: APIGatewayRestResolver, headers: dict[str, str]) -> None:
    """Headers for this request's response, whatever it turns out to be."""
    app.context["response_headers"].update(headers)


def source_ip(app: APIGatewayRestResolver) -> str:
    return app.current_event.request_context.identity.source_ip or "unknown"


def current_principal(app: APIGatewayRestResolver) -> Principal:
    """The caller as the authorizer established it (API Gateway passes it in the event)."""
    context = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    try:
        return Principal.from_authorizer_context(context)
    except ValueError:
        raise Unauthorized("A valid API key is required.") from None


def lambda_entrypoint(app: APIGatewayRestResolver):
    """The Lambda handler for `app`: logging, tracing, metrics and the request id wired in once."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict, context: Any) -> dict:
        request_id = request_id_of(event)
        logger.set_correlation_id(request_id)
        # Filled by routes (add_response_headers) and stamped on whatever response leaves,
        # error responses included.
        extra_headers: dict[str, str] = {}
        app.append_context(request_id=request_id, response_headers=extra_headers)
        count_request()
        response = app.resolve(_read_body_as_json(event), context)
        for name, value in {**extra_headers, REQUEST_ID_HEADER: request_id}.items():
            _stamp_header(response, name, value)
        _count_outcome(response["statusCode"])
        return response

    return handler


def _count_outcome(status: int) -> None:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if status >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif status >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)


def _read_body_as_json(event: dict) -> dict:
    """InferGate speaks only JSON: read every body as JSON, whatever its Content-Type says
    (curl's `-d` alone sends form encoding, which would otherwise be parsed as a form)."""
    if not event.get("body"):
        return event
    body = event["body"]
    if event.get("isBase64Encoded"):
        # Bytes that are not UTF-8 cannot be JSON; decoding them leniently makes the parser say so.
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    json_type = "application/json"
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    return {
        **event,
        "body": body,
        "isBase64Encoded": False,
        "headers": {**headers, "Content-Type": json_type},
        "multiValueHeaders": {**multi, "Content-Type": [json_type]},
    }


def _stamp_header(response: dict, name: str, value: str) -> None:
    if response.get("multiValueHeaders") is not None:
        response["multiValueHeaders"][name] = [value]
    else:
        response.setdefault("headers", {})[name] = value
