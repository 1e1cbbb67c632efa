"""GET /metrics in Prometheus' format over HTTP through `make run`: every instance's requests
together, each counter moved by exactly what was sent."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def gateway(gateway_of, faulty_ollama_url):
    # Its own key prefix: no other gateway's requests in its counters.
    return gateway_of("prometheus", model_url=faulty_ollama_url, RATE_LIMIT_RPM="3",
                      REDIS_KEY_PREFIX=f"prom-{uuid.uuid4().hex[:8]}:", DEVKIT_INSTANCES="2")


def scrape(gateway, **options) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{gateway.url}/metrics", **options)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def moved(before: dict, after: dict) -> dict:
    return {series: after[series] - before.get(series, 0) for series in after if after[series] != before.get(series, 0)}


def test_the_counters_move_by_exactly_what_was_sent(gateway, faults):
    key = gateway.register()["api_key"]
    before = scrape(gateway, params={"format": "prometheus"})

    with httpx.Client(base_url=gateway.url, headers={"x-api-key": key}, timeout=60) as http:
        answers = [http.post("/v1/chat", json={"prompt": f"count {n} please"}) for n in range(2)]
        faults(mode="status", status=500)
        failed = http.post("/v1/chat", json={"prompt": "fail"})
        refused = http.post("/v1/chat", json={"prompt": "one too many"})
    assert [a.status_code for a in answers] == [200, 200] and failed.status_code == 502
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"

    after = scrape(gateway, headers={"Accept": "text/plain;version=0.0.4"})
    change = moved(before, after)
    chat = ("route", "/v1/chat")
    assert change[("infergate_requests_total", (chat, ("status", "200")))] == 2
    assert change[("infergate_requests_total", (chat, ("status", "502")))] == 1
    assert change[("infergate_requests_total", (chat, ("status", "429")))] == 1
    assert change[("infergate_rate_limited_total", (("limit", "rpm"),))] == 1
    assert change[("infergate_upstream_failures_total", (("kind", "error"),))] == 1
    for kind in ("prompt", "completion"):
        assert change[("infergate_tokens_total", (("kind", kind), ("model", "smollm2:135m")))] == sum(
            a.json()["usage"][f"{kind}_tokens"] for a in answers)
    assert change[("infergate_request_duration_seconds_count", (chat,))] == 4
    assert change[("infergate_request_duration_seconds_bucket", (("le", "+Inf"), chat))] == 4
    assert change[("infergate_upstream_duration_seconds_count", (("model", "smollm2:135m"),))] == 3
    server = (("server", "ollama"),)
    assert change[("infergate_server_requests_total", server)] == 3
    assert change[("infergate_server_failures_total", server)] == 1
    assert change[("infergate_server_duration_seconds_count", server)] == 3
    assert after[("infergate_circuit_breaker_open", server)] == 0
    assert after[("infergate_server_in_flight", server)] == 0


def test_the_json_answer_keeps_its_contract(gateway):
    answer = httpx.get(f"{gateway.url}/metrics", headers={"Accept": "application/json"})
    assert answer.status_code == 200 and set(answer.json()) == {"totalRequests", "uptime", "memoryUsage"}
    assert httpx.get(f"{gateway.url}/metrics", params={"format": "xml"}).status_code == 400


def test_every_metric_the_grafana_dashboard_queries_is_in_the_exposition(gateway):
    import json
    import re

    from tests.support.paths import ROOT

    dashboard = json.loads((ROOT / "dashboards" / "grafana-infergate.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\binfergate_[a-z_]+", target["expr"])}
    exposition = httpx.get(f"{gateway.url}/metrics", params={"format": "prometheus"}).text
    families = {family.name: family.type for family in text_string_to_metric_families(exposition)}

    def exposed(name: str) -> bool:
        for suffix, kind in (("_bucket", "histogram"), ("_sum", "histogram"), ("_count", "histogram"), ("_total", "counter")):
            if name.endswith(suffix) and families.get(name.removesuffix(suffix)) == kind:
                return True
        return name in families

    assert len(queried) >= 8
    assert {name for name in queried if not exposed(name)} == set()
