from __future__ import annotations

from infergate.models.base import Model

# OpenAI's error `type` for each status, so that one shape serves every client.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ErrorDetail(Model):
    message: str
    type: str
    param: str | None
    code: str


class ErrorBody(Model):
    """The body of every error response, OpenAI's shape:
    `{"error": {"message", "type", "param", "code"}}`; `param` names the field at fault, if any."""

    error: ErrorDetail

    @classmethod
    def of(cls, status: int, code: str, message: str, *, param: str | None = None) -> ErrorBody:
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return cls(error=ErrorDetail(message=message, type=kind, param=param, code=code))
