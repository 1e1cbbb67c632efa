"""One Logger and one Metrics per function instance, shared by all modules.

Tracing is Lambda's own (`Tracing: Active` in template.yaml): the service
records every invocation without the X-Ray SDK in the function, whose import
(it pulls in botocore) would cost more cold start than the rest of a
handler.

Every log line passes through `RedactingFormatter`: API keys, `Authorization`
and `Cookie` values are replaced before the line is written, wherever they
appear (a logged event, an exception message, an extra key).
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

REDACTED = "[REDACTED]"

# Field names whose values are secrets whatever they look like.
SECRET_FIELDS = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "api_key", "apikey", "password"}
)
# Secrets inside free text: an InferGate key, a bearer credential, a cookie header.
SECRET_PATTERNS = (
    (re.compile(r"(ig[ka]_)[A-Za-z0-9]{8,}"), r"\1" + REDACTED),
    # A JWT: header.payload.signature, the header always starting {" in base64url.
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[REDACTED JWT]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)((?:set-)?cookie|x-api-key|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\"'\n]+"), r"\1\2" + REDACTED),
)


def redact(value: Any) -> Any:
    """Return `value` with every secret it holds replaced by a marker."""
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in SECRET_FIELDS and value_ is not None else redact(value_)
            for key, value_ in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        for pattern, replacement in SECRET_PATTERNS:
            value = pattern.sub(replacement, value)
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict) -> str:  # type: ignore[override]
        return super().serialize(redact(log))


logger = Logger(logger_formatter=RedactingFormatter())
# Whether this request is in the request total already: admitting a request counts it.
request_counted: ContextVar[bool] = ContextVar("request_counted", default=False)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "InferGate"))


def count(name: str, value: int = 1) -> None:
    """Add `value` to this invocation's count metric `name` (published when the invocation ends)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
