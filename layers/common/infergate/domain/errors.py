"""Every failure a caller can see, as the domain names it: a stable code, a message for the
caller, and the facts the caller may act on (which field is at fault, when to retry, which
limit refused it).

Raised by the domain, the stores and the model server's client. How each is answered over
HTTP (its status, its headers, OpenAI's error type) is the edge's business: api/errors.py
holds that table, and the OpenAPI document is generated from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infergate.domain.admission import LimitState
    from infergate.domain.model_server import CutOff


class InferGateError(Exception):
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request's field at fault, if one is
        self.retry_after = retry_after  # seconds, when waiting is the answer
        if code is not None:
            self.code = code


class InvalidRequest(InferGateError):
    code = "invalid_request"


class ThinkingUnsupported(InvalidRequest):
    """The model was asked to think and cannot: the model server said so before answering."""


class Unauthorized(InferGateError):
    code = "unauthorized"

    def __init__(self, message: str, *, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge  # the scheme credentials are expected in, when the route names one


class Forbidden(InferGateError):
    code = "forbidden"


class AccountSuspended(Forbidden):
    code = "account_suspended"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"

    @classmethod
    def naming(cls, model: str) -> ModelNotAllowed:
        return cls(f"Model '{model}' is not among the models your plan or key may use.", param="model")


class NotFound(InferGateError):
    code = "not_found"


class Conflict(InferGateError):
    code = "conflict"


class EmailAlreadyRegistered(InferGateError):
    code = "email_already_registered"


class RateLimited(InferGateError):
    """A limit refused the request: `limit` names its kind (rpm, tpm, register, concurrency), and
    `requests` and `tokens` are the limits' standing when it was refused."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, limit: str | None = None,
                 requests: LimitState | None = None, tokens: LimitState | None = None, param: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, param=param)
        self.limit, self.requests, self.tokens = limit, requests, tokens


class TooManyConcurrentRequests(RateLimited):
    code = "too_many_concurrent_requests"


class QuotaExceeded(RateLimited):
    """The month's quota is spent; `retry_after` is when the next month begins."""

    code = "quota_exceeded"


class BudgetExceeded(RateLimited):
    """A budget in money (a team's) is spent; `param` names whose, `retry_after` is when the next month begins."""

    code = "budget_exceeded"


class BudgetHeldInFlight(RateLimited):
    """What remains of a budget is held by requests in flight; `param` names whose."""

    code = "budget_held_in_flight"


class ModelQuotaExceeded(RateLimited):
    """A per-model quota (a team's, for one model) is spent; `param` is "model"."""

    code = "model_quota_exceeded"


class ModelQuotaHeldInFlight(RateLimited):
    """What remains of a per-model quota is held by requests in flight."""

    code = "model_quota_held_in_flight"


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

    code = "upstream_error"

    def __init__(self, message: str, *, server_unwell: bool = True, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.server_unwell = server_unwell


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class ModelServerBusy(UpstreamError):
    """The model server's own queue was full (Ollama's 503): a failure on-call needs to see, by its own name."""

    code = "upstream_busy"


class AnswerCutOff(InferGateError):
    """An answer that ended before it was whole, raised once what it generated is charged."""

    def __init__(self, cut: CutOff, *, charged: int) -> None:
        super().__init__(f"{cut.reason} The {charged} tokens used before it ended were charged.", code=cut.code)
        self.cut, self.charged = cut, charged


class ServiceUnavailable(InferGateError):
    code = "service_unavailable"


class BreakerOpen(ServiceUnavailable):
    """The model server's circuit breaker is open: the server is given a rest."""


class ModelUnavailable(ServiceUnavailable):
    """Every server that serves the model is unhealthy (its breaker open): the model exists, but
    cannot be served right now."""

    code = "model_unavailable"


class ModelBusy(ServiceUnavailable):
    """Every server that serves the model was full for as long as the request could wait."""

    code = "model_busy"


class RateLimiterUnavailable(ServiceUnavailable):
    """Redis could not be asked; whether to admit the request is a policy decision."""


class ModelNotFound(InferGateError):
    code = "model_not_found"

    @classmethod
    def naming(cls, model: str) -> ModelNotFound:
        return cls(f"Model '{model}' is not available on this gateway.", param="model")


class PromptTooLarge(InferGateError):
    code = "prompt_too_large"
