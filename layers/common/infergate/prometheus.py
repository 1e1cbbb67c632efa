"""Request metrics in Prometheus' text exposition format, shared by every function instance.

Each request's access line becomes a handful of increments (`increments`),
which its function adds to one Redis hash in one script call (a chat's, in the
script that concludes it: stores/held.py); GET
/metrics renders the hash (`render`). Keys are the exposition's own series
(`infergate_requests_total{route="/v1/chat",status="200"}`). A histogram
observation adds to its own bucket only (a request writes a handful of
fields, not one per bound); rendering makes the buckets cumulative, as the
format wants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from infergate.domain.errors import ServiceUnavailable
from infergate.observability import logger

if TYPE_CHECKING:
    from infergate.domain.pool import ServerState
    from infergate.stores.counters import RedisCounters
    from infergate.stores.limits import RedisLimitStore

# Seconds: from a cached answer to a long streamed one.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FAMILIES = {
    "infergate_requests_total": ("counter", "Requests answered, by route and status."),
    "infergate_tokens_total": ("counter", "Tokens charged, by model and kind (prompt, completion)."),
    "infergate_rate_limited_total": ("counter", "Requests refused by a limit, by limit."),
    "infergate_quota_exceeded_total": ("counter", "Requests refused because the monthly quota is spent."),
    "infergate_upstream_failures_total": ("counter", "Model-server failures, by kind."),
    "infergate_circuit_breaker_open": ("gauge", "1 while a model server's circuit breaker is open or probing, by server."),
    "infergate_server_in_flight": ("gauge", "Requests a model server is answering now, from every instance, by server."),
    "infergate_server_requests_total": ("counter", "Requests sent to a model server, by server (each one tried)."),
    "infergate_server_failures_total": ("counter", "Requests a model server failed, by server."),
    "infergate_request_duration_seconds": ("histogram", "Time to answer a request, by route (a stream's to its end)."),
    "infergate_upstream_duration_seconds": ("histogram", "Time the model server took, by model."),
    "infergate_server_duration_seconds": ("histogram", "Time the model server that answered took, by server."),
}
# The outcomes of a request its last server failed.
SERVER_FAILURES = {"upstream_error", "upstream_timeout", "service_unavailable"}
# The outcomes that are a limit's refusal, and the limit each names.
LIMITS = {"rate_limited": "rate", "too_many_concurrent_requests": "concurrency", "quota_held_in_flight": "quota_in_flight"}


class RequestMetrics:
    """Every request, counted in the metrics every instance shares; never fails the request."""

    def __init__(self, counters: RedisCounters, limits: RedisLimitStore) -> None:
        self._counters, self._limits = counters, limits

    def record(self, line: Mapping[str, Any]) -> None:
        """Adds a request's access line to the shared metrics: with its held conclusions, if it has
        any (stores/held.py), in the same script."""
        added = increments(line)
        try:
            if not self._limits.conclude_held(added):
                self._counters.add(added)
        except ServiceUnavailable as error:
            logger.warning("request metrics not recorded: Redis unavailable", extra={"error": _cause(error)})

    def count(self) -> None:
        """Counts one API request for /metrics' total (admitting a request counts it already)."""
        try:
            self._counters.count_request()
        except ServiceUnavailable as error:
            logger.warning("request not counted: Redis unavailable", extra={"error": _cause(error)})


def _cause(error: Exception) -> str:
    return type(error.__cause__ or error).__name__


def increments(line: Mapping[str, Any]) -> dict[str, float]:
    """What one request's access line adds to the metrics."""
    route, outcome = line.get("route") or "unmatched", line.get("outcome", "")
    added: dict[str, float] = {series("infergate_requests_total", route=route, status=line.get("status", 0)): 1}
    _observe(added, "infergate_request_duration_seconds", line.get("latency_ms", 0) / 1000, route=route)
    model = line.get("model")
    if model:
        for kind in ("prompt", "completion"):
            if line.get(f"{kind}_tokens"):
                added[series("infergate_tokens_total", model=model, kind=kind)] = line[f"{kind}_tokens"]
        if line.get("upstream_ms") is not None:
            _observe(added, "infergate_upstream_duration_seconds", line["upstream_ms"] / 1000, model=model)
    if outcome in LIMITS:
        added[series("infergate_rate_limited_total", limit=line.get("limit") or LIMITS[outcome])] = 1
    elif outcome == "quota_exceeded":
        added[series("infergate_quota_exceeded_total")] = 1
    elif outcome.startswith("upstream_"):
        added[series("infergate_upstream_failures_total", kind=outcome.removeprefix("upstream_"))] = 1
    _count_servers(added, line, outcome)
    return added


def _count_servers(added: dict[str, float], line: Mapping[str, Any], outcome: str) -> None:
    """Each server the request was sent to: those it moved away from failed it; the last answered
    (or failed too)."""
    failed, server = list(line.get("servers_failed") or ()), line.get("server")
    tried = failed + ([server] if server else [])
    for name in tried:
        added[series("infergate_server_requests_total", server=name)] = tried.count(name)
    failures = failed + ([server] if server and outcome in SERVER_FAILURES else [])
    for name in failures:
        added[series("infergate_server_failures_total", server=name)] = failures.count(name)
    if server and line.get("upstream_ms") is not None:
        _observe(added, "infergate_server_duration_seconds", line["upstream_ms"] / 1000, server=server)


def render(values: Mapping[str, float], *, servers: Sequence[ServerState] | None) -> str:
    """The exposition: every series counted so far, under its family's TYPE and HELP, and each
    server's breaker and requests in flight now (None: they cannot be read)."""
    values = _cumulative(values)
    for state in servers or ():
        values[series("infergate_circuit_breaker_open", server=state.name)] = int(state.breaker != "closed")
        values[series("infergate_server_in_flight", server=state.name)] = state.in_flight
    lines = []
    for family, (kind, meaning) in FAMILIES.items():
        lines += [f"# HELP {family} {meaning}", f"# TYPE {family} {kind}"]
        lines += [f"{name} {_number(values[name])}" for name in sorted(values, key=_bucket_order)
                  if _family_of(name) == family]
    return "\n".join(lines) + "\n"


def series(name: str, **labels: Any) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{key}="{_escaped(value)}"' for key, value in labels.items()) + "}"


def _observe(added: dict[str, float], family: str, seconds: float, **labels: Any) -> None:
    bound = next((bound for bound in BUCKETS if seconds <= bound), "+Inf")
    added[series(f"{family}_bucket", **labels, le=bound)] = 1
    added[series(f"{family}_sum", **labels)] = seconds
    added[series(f"{family}_count", **labels)] = 1


def _cumulative(values: Mapping[str, float]) -> dict[str, float]:
    """`values` with each histogram's buckets counting every observation up to their bound,
    every bound present, +Inf included."""
    result, histograms = {}, {}
    for name, value in values.items():
        if _BUCKET.match(name):
            head, bound = _bucket_order(name)
            histograms.setdefault(head, {})[bound] = value
        else:
            result[name] = value
    for head, counts in histograms.items():
        total = 0.0
        for bound in (*BUCKETS, float("inf")):
            total += counts.get(bound, 0)
            result[f'{head}le="{"+Inf" if bound == float("inf") else bound}"}}'] = total
    return result


def _family_of(name: str) -> str:
    base = name.split("{", 1)[0]
    for suffix in ("_bucket", "_sum", "_count"):
        if base.endswith(suffix) and base.removesuffix(suffix) in FAMILIES:
            return base.removesuffix(suffix)
    return base


_BUCKET = re.compile(r'^(.*_bucket\{(?:.*,)?)le="([^"]+)"\}$')


def _bucket_order(name: str) -> tuple[str, float]:
    """Series in name order, a histogram's buckets by their bound (+Inf last): the series up to
    its `le` label, and the bound."""
    found = _BUCKET.match(name)
    if found is None:
        return name, 0.0
    return found.group(1), float("inf") if found.group(2) == "+Inf" else float(found.group(2))


def _escaped(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
