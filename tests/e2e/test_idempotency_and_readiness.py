"""Replays of an Idempotency-Key count like any request; readiness tells which dependency is
failing, quickly."""

from __future__ import annotations


def test_replays_count_under_the_request_limit_with_current_headers(stack, http):
    key = stack.register(http)["api_key"]
    same = {"json": {"prompt": "pay once", "max_tokens": 5}, "headers": {"x-api-key": key, "Idempotency-Key": "order-7"}}
    first = http.post("/v1/chat", **same)
    assert first.status_code == 200
    answers = [http.post("/v1/chat", **same) for _ in range(70)]  # RATE_LIMIT_RPM is 60
    served = [answer for answer in answers if answer.status_code == 200]
    assert len(served) == 59 and {answer.status_code for answer in answers[59:]} == {429}
    assert all(answer.json() == first.json() and answer.headers["Idempotent-Replayed"] == "true" for answer in served)
    assert [int(answer.headers["X-RateLimit-Remaining"]) for answer in served[:3]] == [58, 57, 56]
    assert answers[-1].json()["error"]["code"] == "rate_limited" and answers[-1].headers["Retry-After"]


def test_readiness_reports_each_dependency(http):
    ready = http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert {name: check["status"] for name, check in ready.json()["checks"].items()} == {
        "mongodb": "ok", "redis": "ok", "model_server": "ok"}
    assert http.get("/health").json()["status"] == "OK"
