"""`Idempotency-Key`: a retried request is answered once and charged once.

Powertools Idempotency, persisted in MongoDB beside the ledger (stores/idempotency_store.py:
a record Redis lost would let a retry be charged twice), keyed by the caller's user, the
route and the key, and checked against a hash of the body: the same key with
the same body gets the first response back (same id, marked
`Idempotent-Replayed: true`), with another body it gets 422. A replay counts
as a request under the key's requests-per-minute limit, like any other, and
carries the limit's current X-RateLimit-* headers, not the stored ones. A retry that
arrives while the first is still running waits for it and gets its
response. A request that fails leaves no record, so retrying it runs it
again: a failure before the model generated anything costs nothing, and an
answer cut off after it did is charged what it generated, its retry being a
new request.

A streamed answer (`idempotently_streamed`) holds its key while it streams.
Its whole body is stored once it has ended complete, and a replay streams
that body again. A stream cut off (an error event, or a reader gone)
frees its key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.event_handler import Response

from infergate.api import streaming
from infergate.api.app import App
from infergate.api.errors import IdempotencyInProgress, IdempotencyKeyReused, rate_limit_headers
from infergate.api.streaming import EVENT_STREAM
from infergate.domain.errors import InvalidRequest, ServiceUnavailable
from infergate.observability import logger, note, noted

if TYPE_CHECKING:
    from pymongo.database import Database

    from infergate.domain.principal import Principal

T = TypeVar("T")
HEADER = "Idempotency-Key"
_ACCEPTABLE = re.compile(r"^[\x21-\x7e]{1,255}$")
# How long a retry waits for the first request to finish before answering 409.
WAIT_SECONDS = 25.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Records:
    """Powertools' idempotent function over Redis, its configuration and its store: one per instance."""

    config: Any
    run: Callable[..., dict]
    store: Any


def records(database: Database, *, ttl_seconds: int) -> Records:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    from infergate.stores.idempotency_store import MongoIdempotencyStore

    config = IdempotencyConfig(
        event_key_jmespath="[scope, key]",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
    )

    def run(request: dict, compute: Callable[[], dict]) -> dict:
        return compute()

    store = MongoIdempotencyStore(database)
    # Records are `idempotency#<hash>`, not Powertools' own name (the function's and this module's), which
    # would change with the code. Streams use the store directly, under the same name, so that one key is
    # one record.
    name = "idempotency"
    store.configure(config, key_prefix=name)
    return Records(config, idempotent_function(data_keyword_argument="request", config=config,
                                               persistence_store=store, key_prefix=name)(run), store)


def idempotently(app: App, principal: Principal, respond: Callable[[], Response]) -> Response:
    """`respond()`, or, for a request carrying an Idempotency-Key, the response the key already has."""
    key = _key(app)
    if not key:
        return respond()
    records = app.services.idempotency
    records.config.register_lambda_context(app.lambda_context)  # a crashed first attempt's lock ends with its time
    executed = []

    def compute() -> dict:
        executed.append(True)
        response = respond()
        return {
            "status": response.status_code,
            "content_type": response.headers.get("Content-Type", "application/json"),
            "body": response.body,
            "headers": {**app.context["response_headers"], **_plain_headers(response)},
            "model": noted("model"),
        }

    stored = _waiting(app, lambda: records.run(request=_request(app, principal, key), compute=compute))
    headers = stored["headers"] if executed else _replay_headers(app, principal, stored)
    return Response(status_code=stored["status"], content_type=stored["content_type"], body=stored["body"], headers=headers)


def idempotently_streamed(app: App, principal: Principal, respond: Callable[[], Response]) -> Response:
    """`respond()`, a streamed answer (api.streaming.streamed), or for a request carrying an
    Idempotency-Key the answer the key already has, streamed again."""
    key = _key(app)
    if not key:
        return respond()
    records = app.services.idempotency
    records.config.register_lambda_context(app.lambda_context)
    request, store = _request(app, principal, key), records.store
    replay = _waiting(app, lambda: _held_or_replayed(app, store, request))
    if replay is not None:
        return _replayed_stream(app, principal, replay)
    try:
        response = respond()
    except BaseException as error:
        _forget(store, request, error)
        raise
    headers = {**app.context["response_headers"], **_plain_headers(response)}  # the context ends with the handler
    streaming.keep_when_complete(lambda body: store.save_success(data=request, result={
        "status": response.status_code, "content_type": EVENT_STREAM, "body": body, "headers": headers,
        "model": noted("model"),
    }), lambda: _forget(store, request, RuntimeError("the stream was cut off")))
    return response


def _held_or_replayed(app: App, store: Any, request: dict) -> dict | None:
    """Holds the key for this request (None), or the answer a completed request with the key
    had; IdempotencyAlreadyInProgressError while another request holds it."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyItemAlreadyExistsError,
        IdempotencyItemNotFoundError,
    )
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS

    while True:
        try:
            store.save_inprogress(data=request, remaining_time_in_millis=app.lambda_context.get_remaining_time_in_millis())
            return None
        except IdempotencyItemAlreadyExistsError:
            try:
                record = store.get_record(data=request)
            except IdempotencyItemNotFoundError:  # it ended, cut off, as we looked: try again
                continue
            if record.status == STATUS_CONSTANTS["COMPLETED"]:
                return record.response_json_as_dict()
            raise IdempotencyAlreadyInProgressError(f"A request with this {HEADER} is in progress.") from None


def _waiting(app: App, attempt: Callable[[], T]) -> T:
    """`attempt()`, again after a moment while the first request with the key is still being
    answered (409 once the wait is over); 422 if the key came with another body, 503 if the
    store cannot be asked."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    deadline = _waiting_deadline(app)
    while True:
        try:
            return attempt()
        except IdempotencyAlreadyInProgressError:
            _wait_or_give_up(deadline)
        except IdempotencyValidationError:
            raise IdempotencyKeyReused(f"This {HEADER} was used with a different request body.") from None
        except IdempotencyPersistenceLayerError:
            raise _store_unavailable() from None


def _forget(store: Any, request: dict, error: BaseException) -> None:
    """Frees the key of a request that did not complete; if the store cannot be asked, its
    in-progress record ends with the function's time."""
    try:
        store.delete_record(data=request, exception=error)
    except Exception:  # noqa: BLE001 - the request's own failure is the one to report
        logger.warning("could not free an Idempotency-Key")


def _key(app: App) -> str:
    key = app.current_event.headers.get(HEADER.lower(), "")
    if key and not _ACCEPTABLE.match(key):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 printable characters.")
    return key


def _request(app: App, principal: Principal, key: str) -> dict:
    return {
        "scope": f"{principal.user_id}:{app.current_event.http_method}:{app.current_event.resource}",
        "key": key,
        "body": json.loads(app.current_event.body or "null"),
    }


def _waiting_deadline(app: App) -> float:
    return time.monotonic() + min(WAIT_SECONDS, app.lambda_context.get_remaining_time_in_millis() / 1000 - 2)


def _wait_or_give_up(deadline: float) -> None:
    """A moment's wait for the first request with the key; 409 once the deadline has passed."""
    if time.monotonic() >= deadline:
        raise IdempotencyInProgress(f"A request with this {HEADER} is still being answered; retry shortly.",
                                    retry_after=1)
    time.sleep(POLL_SECONDS)


def _store_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(f"Requests with an {HEADER} cannot be accepted right now; retry shortly.", retry_after=1)


def _replay_headers(app: App, principal: Principal, stored: dict) -> dict[str, str]:
    """The stored headers, marked replayed, with the key's limit counted now: a replay is a request,
    and its access line names the model that answered it first."""
    admission = app.services.gatekeeper.admit(principal)  # RateLimited once the key's limit is reached
    note(model=stored.get("model"))
    headers = {name: value for name, value in stored["headers"].items() if not name.lower().startswith("x-ratelimit-")}
    return headers | {**rate_limit_headers(admission.requests, admission.tokens), "Idempotent-Replayed": "true"}


def _replayed_stream(app: App, principal: Principal, stored: dict) -> Response:
    return streaming.streamed(iter([stored["body"]]), headers=_replay_headers(app, principal, stored))


def _plain_headers(response: Response) -> dict[str, str]:
    return {name: values[-1] if isinstance(values, list) else values for name, values in response.headers.items()
            if name.lower() != "content-type"}
