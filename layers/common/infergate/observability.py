"""One Logger and one Metrics per function instance, shared by all modules.

Tracing is Lambda's own (`Tracing: Active` in template.yaml): the service
records every invocation without the X-Ray SDK in the function, whose import
(it pulls in botocore) would cost more cold start than the rest of a
handler.

Every request is logged once, at INFO, when it is answered: its access line
(`open_access_line` when it arrives, `note` as it goes, `write_access_line`
when it is answered). It names the route, the status, the latency, the
caller, the model, the tokens and the outcome, never a prompt or an answer;
with the correlation id every line carries, it is how a caller's
`x-request-id` is found.

Every log line passes through `RedactingFormatter`: before the line is
written, every value whose name says it is a credential (a header, a query
parameter or a field called authorization, proxy-authorization, api-key,
x-auth-token, x-amz-security-token, token, secret, password, cookie,
signature, session, ...) is replaced, and so are API keys, sign-in tokens
and such name=value pairs inside free text (a message, an exception, a URL), and the userinfo of
any URL (`scheme://user:password@host`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

from infergate.stores.held import hold

if TYPE_CHECKING:
    from infergate.domain.ledger import RequestOutcome

REDACTED = "[REDACTED]"

# A name carries a credential when one of its words (split at - _ . and spaces) is one of
# these, or it ends in "api key" however spelt. "tokens", "key_id" and "prompt_tokens" do not.
CREDENTIAL_WORDS = frozenset({
    "authorization", "auth", "token", "secret", "password", "passwd", "pwd", "passphrase", "cookie",
    "credential", "credentials", "signature", "session", "apikey", "sig",
})
_WORDS = re.compile(r"[-_.\s]+")
# A credential's name, in free text: the same words, as the last of a name.
_NAME = (r"[\w.-]*?(?:authorization|auth|token|secret|password|passwd|pwd|passphrase|cookie|credentials?|signature|"
         r"session|api[-_]?key|sig)")
# Secrets inside free text: an InferGate key, a sign-in token, a bearer credential, and any
# "name: value" or "name=value" whose name says it is a credential (a header, a query parameter).
SECRET_PATTERNS = (
    (re.compile(r"(ig[ka]_)[A-Za-z0-9]{8,}"), r"\1" + REDACTED),
    # A JWT: header.payload.signature, the header always starting {" in base64url.
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[REDACTED JWT]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), r"\1 " + REDACTED),
    # A URL's userinfo (https://user:password@host, mongodb+srv://user:password@cluster): all of it.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@"), r"\1" + REDACTED + "@"),
    (re.compile(rf"(?i)([?&;]\s*{_NAME}=)[^&#\s\"']+"), r"\1" + REDACTED),
    (re.compile(rf"(?i)(\b{_NAME}\b)(['\"]?\s*[:=]\s*['\"]?)(?!\[REDACTED)[^\"'\n&,;}}]+"), r"\1\2" + REDACTED),
)


def is_credential_name(name: str) -> bool:
    words = [word for word in _WORDS.split(name.lower()) if word]
    return bool(words) and (any(word in CREDENTIAL_WORDS for word in words) or words[-2:] == ["api", "key"])


def redact(value: Any) -> Any:
    """Return `value` with every secret it holds replaced by a marker."""
    if isinstance(value, dict):
        return {
            key: REDACTED if value_ is not None and is_credential_name(str(key)) else redact(value_)
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
# The domain logs through the standard library, under `infergate`: its lines take the same
# handler, so the same format, keys and redaction.
_domain = logging.getLogger("infergate")
_domain.handlers, _domain.propagate = [logger.registered_handler], False
_domain.setLevel(logger.log_level)
# Whether this request is in the request total already: admitting a request counts it.
request_counted: ContextVar[bool] = ContextVar("request_counted", default=False)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "InferGate"))


def count(name: str, value: int = 1) -> None:
    """Add `value` to this invocation's count metric `name` (published when the invocation ends)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


class AccessLineTelemetry:
    """The domain's Telemetry: counts become this invocation's metrics, and a metered request's
    outcome goes on its access line."""

    def count(self, metric: str, value: int = 1) -> None:
        count(metric, value)

    def ended(self, outcome: RequestOutcome) -> None:
        note(model=outcome.model, outcome=outcome.status, prompt_tokens=outcome.prompt_tokens,
             completion_tokens=outcome.completion_tokens, end_user=outcome.end_user, upstream_ms=outcome.latency_ms,
             server=outcome.server, servers_tried=len(outcome.servers) or None,
             servers_failed=list(outcome.servers[:-1]) or None)


# What the access line of the request being answered says so far; None between requests.
_access_line: ContextVar[dict[str, Any] | None] = ContextVar("access_line", default=None)
# Fields a request's access line may carry, in the order it writes them.
ACCESS_FIELDS = ("route", "method", "status", "latency_ms", "outcome", "user_id", "key_id", "model", "prompt_tokens",
                 "completion_tokens", "upstream_ms", "server", "servers_tried", "servers_failed", "limit", "replayed",
                 "end_user", "metadata", "ignored", "api_request_id", "source_ip")
# Called with each access line as it is written: the shared request metrics (prometheus.RequestMetrics).
_recorder: list[Callable[[dict[str, Any]], None]] = []


def record_access_lines_with(recorder: Callable[[dict[str, Any]], None]) -> None:
    _recorder[:] = [recorder]


def open_access_line(**fields: Any) -> None:
    """Starts the access line of the request that has just arrived. Its conclusions wait for the
    line's metrics, to reach Redis with them in one script (stores/held.py)."""
    hold()
    _access_line.set({"_started": time.monotonic(), **{name: value for name, value in fields.items() if value is not None}})


def note(**fields: Any) -> None:
    """What the request being answered has turned out to be (its model, tokens, outcome ...)."""
    line = _access_line.get()
    if line is not None:
        line.update({name: value for name, value in fields.items() if value is not None})


def noted(name: str) -> Any:
    """What the request being answered has noted of `name` so far (None if nothing)."""
    line = _access_line.get()
    return None if line is None else line.get(name)


def defer_access_line() -> None:
    """The answer goes on after the handler returns (a stream): the line waits for its end."""
    note(_deferred=True)


def write_access_line(*, status: int | None = None, ended: bool = False) -> None:
    """Writes the request's access line, once: now, or, if it was deferred, when `ended`."""
    line = _access_line.get()
    if line is None:
        return
    if status is not None:
        line.setdefault("status", status)
    if line.get("_deferred") and not ended:
        return
    _access_line.set(None)
    line["latency_ms"] = round((time.monotonic() - line["_started"]) * 1000, 1)
    line.setdefault("outcome", "ok" if line.get("status", 500) < 400 else "error")
    fields = {name: line[name] for name in ACCESS_FIELDS if name in line}
    logger.info("request", extra=fields)
    for record in _recorder:
        record(fields)
