from __future__ import annotations

from infergate.models.base import Model


class ErrorDetail(Model):
    code: str
    message: str


class ErrorBody(Model):
    """The body of every error response: `{"error": {"code", "message"}}`."""

    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message))
