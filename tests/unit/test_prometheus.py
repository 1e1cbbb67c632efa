"""What each access line adds to the request metrics, and the exposition Prometheus reads."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from infergate import prometheus
from infergate.domain.pool import ServerState

CHAT = {"route": "/v1/chat", "status": 200, "latency_ms": 812.0, "outcome": "ok", "model": "smollm2:135m",
        "prompt_tokens": 21, "completion_tokens": 17, "upstream_ms": 790}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_chat_counts_its_request_tokens_and_both_durations():
    added = prometheus.increments(CHAT)
    assert added['infergate_requests_total{route="/v1/chat",status="200"}'] == 1
    assert added['infergate_tokens_total{model="smollm2:135m",kind="prompt"}'] == 21
    assert added['infergate_tokens_total{model="smollm2:135m",kind="completion"}'] == 17
    assert added['infergate_request_duration_seconds_bucket{route="/v1/chat",le="1.0"}'] == 1
    assert 'infergate_request_duration_seconds_bucket{route="/v1/chat",le="0.5"}' not in added
    assert added['infergate_upstream_duration_seconds_sum{model="smollm2:135m"}'] == 0.79


def test_refusals_and_failures_count_under_their_own_families():
    assert prometheus.increments({"route": "/v1/chat", "status": 429, "outcome": "rate_limited", "limit": "tpm"})[
        'infergate_rate_limited_total{limit="tpm"}'] == 1
    assert prometheus.increments({"route": "/v1/chat", "status": 429, "outcome": "too_many_concurrent_requests",
                                  "limit": "concurrency"})['infergate_rate_limited_total{limit="concurrency"}'] == 1
    assert prometheus.increments({"route": "/v1/chat", "status": 429, "outcome": "quota_exceeded"})[
        "infergate_quota_exceeded_total"] == 1
    assert prometheus.increments({"route": "/v1/chat", "status": 504, "outcome": "upstream_timeout"})[
        'infergate_upstream_failures_total{kind="timeout"}'] == 1
    # The model server's own queue full (its 503): on-call's most wanted failure, under its own kind.
    assert prometheus.increments({"route": "/v1/chat", "status": 503, "outcome": "upstream_busy"})[
        'infergate_upstream_failures_total{kind="busy"}'] == 1


def test_the_exposition_parses_with_cumulative_buckets_and_the_breaker_gauge():
    values: dict[str, float] = {}
    for line in (CHAT, {**CHAT, "latency_ms": 40.0, "upstream_ms": 30}):
        for name, value in prometheus.increments(line).items():
            values[name] = values.get(name, 0) + value

    servers = [ServerState("gpu-1", "open", 0, 0, 0, None), ServerState("gpu-2", "closed", 3, 9, 0, 120)]
    parsed = samples(prometheus.render(values, servers=servers))

    route = (("route", "/v1/chat"),)
    assert parsed[("infergate_requests_total", (("route", "/v1/chat"), ("status", "200")))] == 2
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "0.05"), *route))] == 1
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "1.0"), *route))] == 2
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 2
    assert parsed[("infergate_request_duration_seconds_count", route)] == 2
    assert parsed[("infergate_circuit_breaker_open", (("server", "gpu-1"),))] == 1
    assert parsed[("infergate_circuit_breaker_open", (("server", "gpu-2"),))] == 0
    assert parsed[("infergate_server_in_flight", (("server", "gpu-2"),))] == 3


def test_each_server_tried_counts_a_request_and_those_moved_away_from_a_failure():
    moved = prometheus.increments({**CHAT, "server": "gpu-2", "servers_tried": 2, "servers_failed": ["gpu-1"]})
    assert moved['infergate_server_requests_total{server="gpu-1"}'] == 1
    assert moved['infergate_server_failures_total{server="gpu-1"}'] == 1
    assert moved['infergate_server_requests_total{server="gpu-2"}'] == 1
    assert 'infergate_server_failures_total{server="gpu-2"}' not in moved
    assert moved['infergate_server_duration_seconds_sum{server="gpu-2"}'] == 0.79
    failed = prometheus.increments({"route": "/v1/chat", "status": 502, "outcome": "upstream_error", "server": "gpu-3",
                                    "servers_tried": 1, "upstream_ms": 5})
    assert failed['infergate_server_failures_total{server="gpu-3"}'] == 1


def test_label_values_are_escaped():
    name = prometheus.series("infergate_tokens_total", model='a"b\\c', kind="prompt")
    parsed = samples(prometheus.render({name: 3}, servers=None))
    assert parsed[("infergate_tokens_total", (("kind", "prompt"), ("model", 'a"b\\c')))] == 3


def test_a_histogram_without_other_labels_renders_every_bucket_cumulatively():
    values = {'infergate_request_duration_seconds_bucket{le="0.1"}': 2,
              'infergate_request_duration_seconds_bucket{le="+Inf"}': 1}
    parsed = samples(prometheus.render(values, servers=None))
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "0.05"),))] == 0
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "0.1"),))] == 2
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "300.0"),))] == 2
    assert parsed[("infergate_request_duration_seconds_bucket", (("le", "+Inf"),))] == 3
