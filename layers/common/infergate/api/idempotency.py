"""`Idempotency-Key`: a retried request is answered once and charged once.

Powertools Idempotency, persisted in Redis, keyed by the caller's user, the
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
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from infergate import wiring
from infergate.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidRequest, ServiceUnavailable
from infergate.models.principal import Principal

HEADER = "Idempotency-Key"
_ACCEPTABLE = re.compile(r"^[\x21-\x7e]{1,255}$")
# How long a retry waits for the first request to finish before answering 409.
WAIT_SECONDS = 25.0
POLL_SECONDS = 0.2


@functools.cache
def _runner() -> tuple[Any, Callable[..., dict]]:
    """Powertools' idempotent function over Redis, built once per instance."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    from infergate.config import get_settings
    from infergate.stores.idempotency_store import RedisIdempotencyStore
    from infergate.stores.redis_client import get_redis

    config = IdempotencyConfig(
        event_key_jmespath="[scope, key]",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=get_settings().idempotency_ttl_seconds,
    )

    @idempotent_function(data_keyword_argument="request", config=config,
                         persistence_store=RedisIdempotencyStore(client=get_redis()))
    def run(request: dict, compute: Callable[[], dict]) -> dict:
        return compute()

    return config, run


def idempotently(app: APIGatewayRestResolver, principal: Principal, respond: Callable[[], Response]) -> Response:
    """`respond()`, or, for a request carrying an Idempotency-Key, the response the key already has."""
    key = app.current_event.headers.get(HEADER.lower(), "")
    if not key:
        return respond()
    if not _ACCEPTABLE.match(key):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 printable characters.")

    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config, run = _runner()
    config.register_lambda_context(app.lambda_context)  # a crashed first attempt's lock ends with its time
    request = {
        "scope": f"{principal.user_id}:{app.current_event.http_method}:{app.current_event.resource}",
        "key": key,
        "body": json.loads(app.current_event.body or "null"),
    }
    executed = False

    def compute() -> dict:
        nonlocal executed
        executed = True
        response = respond()
        return {
            "status": response.status_code,
            "content_type": response.headers.get("Content-Type", "application/json"),
            "body": response.body,
            "headers": {**app.context["response_headers"], **_plain_headers(response)},
        }

    deadline = time.monotonic() + min(WAIT_SECONDS, app.lambda_context.get_remaining_time_in_millis() / 1000 - 2)
    while True:
        try:
            stored = run(request=request, compute=compute)
            break
        except IdempotencyAlreadyInProgressError:
            if time.monotonic() >= deadline:
                raise IdempotencyInProgress(
                    f"A request with this {HEADER} is still being answered; retry shortly.", headers={"Retry-After": "1"}
                ) from None
            time.sleep(POLL_SECONDS)
        except IdempotencyValidationError:
            raise IdempotencyKeyReused(f"This {HEADER} was used with a different request body.") from None
        except IdempotencyPersistenceLayerError:
            raise ServiceUnavailable(f"Requests with an {HEADER} cannot be accepted right now; retry shortly.",
                                     headers={"Retry-After": "1"}) from None
    headers = dict(stored["headers"])
    if not executed:
        admission = wiring.admission().admit(principal)  # RateLimited once the key's limit is reached
        headers = {name: value for name, value in headers.items() if not name.lower().startswith("x-ratelimit-")}
        headers |= {**admission.headers(), "Idempotent-Replayed": "true"}
    return Response(status_code=stored["status"], content_type=stored["content_type"], body=stored["body"], headers=headers)


def _plain_headers(response: Response) -> dict[str, str]:
    return {name: values[-1] if isinstance(values, list) else values for name, values in response.headers.items()
            if name.lower() != "content-type"}
