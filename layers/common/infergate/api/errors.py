"""How every failure is answered over HTTP: one table from each error code to its status and
what it means, OpenAI's error type for each status, and the headers an error's facts call
for. The domain raises errors with a code and facts (domain/errors.py); the resolver answers
them through this table (api/app.py), and the OpenAPI document lists each route's codes with
the status and meaning written here (devkit/openapi.py).

Errors that only the HTTP edge can meet (a body too large, an Idempotency-Key reused) are
defined here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infergate.domain.errors import (
    BudgetExceeded,
    InferGateError,
    ModelQuotaExceeded,
    NotFound,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
)
from infergate.domain.periods import whole_seconds

if TYPE_CHECKING:
    from infergate.domain.admission import LimitState
    from infergate.schemas.errors import ErrorBody


@dataclass(frozen=True)
class Kind:
    status: int
    meaning: str  # for the OpenAPI document


ERRORS: dict[str, Kind] = {
    "invalid_request": Kind(400, "The body, the query or a header is not valid; `message` says what and `param` names "
                                 "the field at fault."),
    "prompt_too_large": Kind(400, "The prompt's upper bound in tokens exceeds what the plan allows one request."),
    "model_not_found": Kind(400, "The model is not available on this gateway."),
    "unauthorized": Kind(401, "A valid API key is required."),
    "missing_api_key": Kind(401, "No API key: send `x-api-key: <key>` or `Authorization: Bearer <key>`."),
    "invalid_api_key": Kind(401, "The key is not valid (unknown, revoked, or of another scheme)."),
    "api_key_expired": Kind(401, "The key has expired (its rotation's grace period or `expires_in_days` ran out)."),
    "invalid_token": Kind(401, "The sign-in token is not valid here."),
    "token_expired": Kind(401, "The sign-in token has expired."),
    "forbidden": Kind(403, "This key may not do this: an admin key on a user's route, a user's key on the admin API, "
                           "or a viewer's admin key asking for a change."),
    "account_suspended": Kind(403, "The account is suspended; its keys are refused until an operator reactivates it."),
    "model_not_allowed": Kind(403, "The plan or the key may not use the model `param` names (their `allowed_models`)."),
    "not_found": Kind(404, "No such route."),
    "key_not_found": Kind(404, "There is no such key (or it is another user's)."),
    "response_not_found": Kind(404, "No response of that id is kept for this user (another user's, deleted, expired, "
                                    "or asked with `store: false`)."),
    "user_not_found": Kind(404, "There is no such user (or they are not a member of the team)."),
    "team_not_found": Kind(404, "There is no such team."),
    "conflict": Kind(409, "The request conflicts with the state of what it names."),
    "email_already_registered": Kind(409, "An account with this email exists."),
    "too_many_keys": Kind(409, "The plan's `max_api_keys` working keys (those in a rotation's grace period "
                               "included) are in use; revoke one first."),
    "key_not_active": Kind(409, "The key was rotated, revoked or has expired; rotate an active key."),
    "idempotency_in_progress": Kind(409, "A request with this Idempotency-Key is still being answered; retry shortly."),
    "request_too_large": Kind(413, "The body is larger than the deployment's MAX_REQUEST_BYTES."),
    "idempotency_key_reused": Kind(422, "This Idempotency-Key was used with a different request body."),
    "rate_limited": Kind(429, "Requests per minute of the key (or of the address, for registration) or tokens per "
                              "minute of the user are spent, or API Gateway throttled the request."),
    "too_many_concurrent_requests": Kind(429, "The user has as many chats in flight as the plan allows."),
    "quota_held_in_flight": Kind(429, "What remains of the month's quota is held by chats in flight; `param` names "
                                      "whose: `user` or `team`."),
    "quota_exceeded": Kind(429, "The month's token quota is spent, or too little of it remains for this prompt; "
                                "`param` names whose: `user` or `team`."),
    "budget_held_in_flight": Kind(429, "What remains of the month's budget is held by chats in flight; `param` names "
                                       "whose (`team`)."),
    "model_quota_held_in_flight": Kind(429, "What remains of the team's monthly quota for this model is held by "
                                            "chats in flight; `param` is `model`."),
    "model_quota_exceeded": Kind(429, "The team's monthly quota for this model is spent, or too little of it "
                                      "remains; `param` is `model`."),
    "budget_exceeded": Kind(429, "The month's budget is spent, or too little of it remains for this request's worst "
                                 "case; `param` names whose (`team`)."),
    "too_many_failed_authentications": Kind(429, "Too many refused credentials from this address in the last minute."),
    "client_closed": Kind(499, "The client closed the connection before a streamed answer ended; only the request "
                               "log sees it."),
    "internal_error": Kind(500, "An unexpected failure; `message` quotes the request id."),
    "upstream_error": Kind(502, "The model server failed or could not be reached."),
    "service_unavailable": Kind(503, "A store or the model server cannot be used right now (or the model server's "
                                     "circuit breaker is open); retry after `Retry-After`."),
    "model_unavailable": Kind(503, "Every server that serves the model is unhealthy right now (their circuit "
                                   "breakers are open); retry after `Retry-After`."),
    "model_busy": Kind(503, "Every server that serves the model was full for as long as the request could wait "
                            "(QUEUE_TIMEOUT_SECONDS); retry after `Retry-After`."),
    "upstream_busy": Kind(503, "The model server's own queue was full (Ollama's 503, with every server of the pool "
                               "tried); retry after `Retry-After`."),
    "upstream_timeout": Kind(504, "The model server (or the function) did not finish in time."),
}

# OpenAI's error `type` for each status, so that one shape serves every client.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class RequestTooLarge(InferGateError):
    code = "request_too_large"


class IdempotencyInProgress(InferGateError):
    code = "idempotency_in_progress"


class IdempotencyKeyReused(InferGateError):
    code = "idempotency_key_reused"


def status_of(code: str) -> int:
    """The status an error of `code` is answered with; an unknown code is an internal error."""
    kind = ERRORS.get(code)
    return kind.status if kind is not None else 500


def status_for(error: InferGateError) -> int:
    """The status `error` is answered with: its code's, except that a NotFound is always 404, whatever
    it names (GET /v1/models/{model} says model_not_found with 404, as OpenAI does; a chat naming an
    unknown model is a 400)."""
    return 404 if isinstance(error, NotFound) else status_of(error.code)


def type_of(status: int) -> str:
    """OpenAI's error type for `status`."""
    return TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def headers_of(error: InferGateError) -> dict[str, str]:
    """The headers `error`'s facts call for: when to retry, the limits' standing, the scheme
    credentials are wanted in."""
    headers = {}
    if isinstance(error, RateLimited):
        headers |= rate_limit_headers(error.requests, error.tokens)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, QuotaExceeded | BudgetExceeded | ModelQuotaExceeded):  # Retry-After is the month's end: the SDKs would sleep till then
        headers["x-should-retry"] = "false"
    if isinstance(error, Unauthorized) and error.challenge:
        headers["WWW-Authenticate"] = error.challenge
    return headers


def rate_limit_headers(requests: LimitState | None, tokens: LimitState | None) -> dict[str, str]:
    """X-RateLimit-* for requests per minute, and the same with -Tokens for tokens per minute."""
    headers = {}
    if requests is not None:
        headers |= {"X-RateLimit-Limit": str(requests.limit), "X-RateLimit-Remaining": str(requests.remaining),
                    "X-RateLimit-Reset": str(whole_seconds(requests.reset_after_ms))}
    if tokens is not None:
        headers |= {"X-RateLimit-Limit-Tokens": str(tokens.limit), "X-RateLimit-Remaining-Tokens": str(tokens.remaining),
                    "X-RateLimit-Reset-Tokens": str(whole_seconds(tokens.reset_after_ms))}
    return headers


def body_of(error: InferGateError) -> ErrorBody:
    """`error` as every error response's body says it."""
    from infergate.schemas.errors import ErrorBody, ErrorDetail  # with the first error answered, not at init

    return ErrorBody(error=ErrorDetail(message=error.message, type=type_of(status_for(error)), param=error.param,
                                       code=error.code))
