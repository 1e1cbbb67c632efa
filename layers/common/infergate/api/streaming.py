"""Routes whose answers stream: server-sent events through API Gateway's streaming integration.

A route handler that streams returns the response's status and headers
(`streamed`) and leaves the body, an iterator of text, to be written as it
is produced. On a streamed route every response leaves as a
StreamedResponse (infergate/runtime.py), errors and answers given whole
included: API Gateway reads every answer of a streaming integration as a
prelude and a body.

The body runs after the handler has returned, so what it logs and counts is
published when it ends. A reader that goes away closes it; a failure inside
it becomes an `error` event, never a stack trace.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import Response

from infergate.api.app import App, lambda_entrypoint
from infergate.api.errors import body_of
from infergate.domain.errors import InferGateError
from infergate.observability import defer_access_line, logger, metrics, write_access_line
from infergate.runtime import StreamedResponse

EVENT_STREAM = "text/event-stream"


@dataclass
class _Body:
    """The body of this invocation's streamed response, and whether it ended complete."""

    text: Iterator[str]
    complete: Callable[[], bool]


_body: ContextVar[_Body | None] = ContextVar("streamed_body", default=None)


def streamed(body: Iterator[str], *, complete: Callable[[], bool] = lambda: True,
             headers: dict[str, str] | None = None) -> Response:
    """A 200 whose body is `body`'s pieces of text, each sent as soon as it is produced;
    `complete()`, once it has ended, says whether it ended with the whole answer."""
    _body.set(_Body(body, complete))
    defer_access_line()
    return Response(status_code=200, content_type=EVENT_STREAM, body="",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})


def keep_when_complete(keep: Callable[[str], None], discard: Callable[[], None]) -> None:
    """Once this invocation's streamed body has ended, `keep` it whole if it ended complete,
    else `discard()`."""
    body = _body.get()
    if body is not None:
        body.text = _kept(body, body.text, keep, discard)


def _kept(body: _Body, text: Iterator[str], keep: Callable[[str], None], discard: Callable[[], None]) -> Iterator[str]:
    parts: list[str] = []
    ended = False
    try:
        for part in text:
            parts.append(part)
            yield part
        ended = True
    finally:
        _close(text)
        try:
            keep("".join(parts)) if ended and body.complete() else discard()
        except Exception:  # noqa: BLE001 - the answer has been given; only its record failed
            logger.exception("could not record a streamed answer for its Idempotency-Key")


def error_event(error: InferGateError, *, event: str | None = None) -> str:
    """An error that ends a stream after it started, in the body's shape: `{"error": {...}}`."""
    return sse(body_of(error).model_dump_json(), event=event)


def sse(data: str, *, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def streaming_entrypoint(app: App, *, routes: frozenset[str]) -> Callable[[dict, Any], Any]:
    """The Lambda handler for `app` (lambda_entrypoint) whose answers on `routes` (API Gateway
    resources) leave as StreamedResponses."""
    handler = lambda_entrypoint(app)

    def entrypoint(event: dict, context: Any) -> Any:
        _body.set(None)
        response = handler(event, context)
        if event.get("resource") not in routes:
            return response
        body = _body.get()
        _body.set(None)
        prelude = {key: response[key] for key in ("statusCode", "headers", "multiValueHeaders") if response.get(key)}
        return StreamedResponse(prelude, _encoded(body.text) if body is not None else [_whole(response)])

    return entrypoint


def _whole(response: dict) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def _encoded(body: Iterator[str]) -> Iterable[bytes]:
    try:
        for text in body:
            yield text.encode()
    except Exception:  # noqa: BLE001 - the stream has started: its reader gets an error event, not a trace
        logger.exception("a streamed answer failed")
        yield error_event(InferGateError("The answer failed; quote the request id to the operator.")).encode()
    finally:
        _close(body)
        write_access_line(ended=True)
        if metrics.metric_set:  # what the stream counted, published now that it has ended
            metrics.flush_metrics()


def _close(text: Iterator[str]) -> None:
    """Ends a body early (its reader is gone), so that what produces it stops."""
    close = getattr(text, "close", None)
    if close is not None:
        close()
