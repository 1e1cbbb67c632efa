"""Every failure a caller can see, with its HTTP status and stable error code.

Raised by the domain and the stores; the API edge turns them into
`{"error": {"message", "type", "param", "code"}}` bodies.
"""

from __future__ import annotations


class InferGateError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.param = param  # the request's field at fault, if one is
        if code is not None:
            self.code = code


class InvalidRequest(InferGateError):
    status, code = 400, "invalid_request"


class RequestTooLarge(InferGateError):
    status, code = 413, "request_too_large"


class Unauthorized(InferGateError):
    status, code = 401, "unauthorized"


class Forbidden(InferGateError):
    status, code = 403, "forbidden"


class AccountSuspended(Forbidden):
    code = "account_suspended"


class NotFound(InferGateError):
    status, code = 404, "not_found"


class Conflict(InferGateError):
    status, code = 409, "conflict"


class EmailAlreadyRegistered(InferGateError):
    status, code = 409, "email_already_registered"


class IdempotencyInProgress(InferGateError):
    status, code = 409, "idempotency_in_progress"


class IdempotencyKeyReused(InferGateError):
    status, code = 422, "idempotency_key_reused"


class RateLimited(InferGateError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={**(headers or {}), "Retry-After": str(retry_after)})
        self.retry_after = retry_after


class TooManyConcurrentRequests(RateLimited):
    code = "too_many_concurrent_requests"


class QuotaExceeded(RateLimited):
    """The month's quota is spent; Retry-After says when the next month begins."""

    code = "quota_exceeded"


class QuotaHeldInFlight(RateLimited):
    """What remains of the quota is held by the user's requests in flight: it comes back
    (all but what they use) as they finish, within seconds."""

    code = "quota_held_in_flight"


class UpstreamError(InferGateError):
    """The model server failed or could not be reached.

    `server_unwell` says whether the failure is a sign that the model server is unwell (its
    circuit breaker counts those): refused or failed connections, its 5xx, a stall. A deadline
    reached while tokens were flowing is the request's own, and says nothing of the server.
    """

    status, code = 502, "upstream_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, server_unwell: bool = True) -> None:
        super().__init__(message, headers=headers)
        self.server_unwell = server_unwell


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class ModelServerBusy(UpstreamError):
    status, code = 503, "service_unavailable"


class ClientClosed(InferGateError):
    """The caller went away before a streamed answer ended; nobody sees this error, the
    request log does."""

    status, code = 499, "client_closed"


class ServiceUnavailable(InferGateError):
    status, code = 503, "service_unavailable"


class ModelNotFound(InferGateError):
    status, code = 400, "model_not_found"

    @classmethod
    def naming(cls, model: str) -> ModelNotFound:
        return cls(f"Model '{model}' is not available on this gateway.", param="model")


class RateLimiterUnavailable(ServiceUnavailable):
    """Redis could not be asked; whether to admit the request is a policy decision."""


class PromptTooLarge(InferGateError):
    status, code = 400, "prompt_too_large"
