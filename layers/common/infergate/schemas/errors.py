"""Errors as every route answers them. Which status and type go with each code is the edge's
table (api/errors.py)."""

from __future__ import annotations

from infergate.schemas.base import Schema


class ErrorDetail(Schema):
    message: str
    type: str
    param: str | None
    code: str


class ErrorBody(Schema):
    """The body of every error response, OpenAI's shape:
    `{"error": {"message", "type", "param", "code"}}`; `param` names the field at fault, if any."""

    error: ErrorDetail
