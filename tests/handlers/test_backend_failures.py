"""Each way the model server can fail, against a real server that misbehaves on cue:
the right status, body and headers, the reservation released, usage unchanged, the
request log saying what happened."""

from __future__ import annotations

import time

import pytest
from devkit.backends import free_port

from infergate.stores.pool import BREAKER
from infergate.stores.redis_keys import pool as pool_keys
from tests.handlers.conftest import body, header
from tests.support import services
from tests.support.accounting import log_lines
from tests.support.functions import reset_instance_state


@pytest.fixture
def faulty(api, monkeypatch, faulty_ollama_url):
    monkeypatch.setenv("OLLAMA_URL", faulty_ollama_url)
    monkeypatch.setenv("OLLAMA_TIMEOUT", "1")
    reset_instance_state()
    return api


def assert_cost_nothing(api, key: str, database, status: str) -> None:
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["tokens_used"], usage["tokens_reserved"], usage["requests"]) == (0, 0, 0)
    entry = next(line for line in log_lines(database) if line["status"] == status)
    assert entry["total_tokens"] == 0 and entry["detail"]


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"mode": "status", "status": 503}, 503, "upstream_busy"),
        ({"mode": "status", "status": 500}, 502, "upstream_error"),
        ({"mode": "hang", "seconds": 5}, 504, "upstream_timeout"),
        ({"mode": "break", "after_pieces": 0}, 502, "upstream_error"),
        ({"mode": "drop", "after_pieces": 0}, 502, "upstream_error"),
        ({"mode": "reset"}, 502, "upstream_error"),
    ],
)
def test_a_failing_model_server_costs_nothing(faulty, faults, database, fault, status, code):
    key = faulty.register()["api_key"]
    faults(**fault)
    response = faulty.call("POST", "/v1/chat", key=key, body={"prompt": "one two three"})
    assert response["statusCode"] == status, body(response)
    assert body(response)["error"]["code"] == code
    if status == 503:
        assert header(response, "Retry-After") == "1"
    assert header(response, "X-RateLimit-Limit") == "60"
    assert_cost_nothing(faulty, key, database, code)


def test_a_model_the_server_says_it_lacks_is_400_naming_it(faulty, faults, database):
    key = faulty.register()["api_key"]
    faults(mode="status", status=404)
    response = faulty.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "model": "tiny:latest"})
    assert response["statusCode"] == 400
    assert body(response)["error"] == {"message": "Model 'tiny:latest' is not available on this gateway.",
                                       "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    assert_cost_nothing(faulty, key, database, "model_not_found")


def test_a_refused_connection_is_502_and_costs_nothing(api, monkeypatch, database):
    monkeypatch.setenv("OLLAMA_URL", f"http://127.0.0.1:{free_port()}")
    reset_instance_state()
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert response["statusCode"] == 502 and body(response)["error"]["code"] == "upstream_error"
    assert_cost_nothing(api, key, database, "upstream_error")


def test_repeated_failures_open_the_breaker_which_answers_503_at_once(
    faulty, faults, monkeypatch, database, redis_client,
):
    monkeypatch.setenv("CIRCUIT_BREAKER_FAILURES", "2")
    monkeypatch.setenv("CIRCUIT_BREAKER_OPEN_SECONDS", "1")
    reset_instance_state()
    key = faulty.register()["api_key"]
    faults(mode="hang", seconds=5, count=10)
    statuses = [faulty.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] for _ in range(2)]
    assert statuses == [504, 504]

    started = time.monotonic()
    refused = faulty.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert time.monotonic() - started < 0.5  # not waiting on the model server
    assert refused["statusCode"] == 503 and body(refused)["error"]["code"] == "service_unavailable"
    assert header(refused, "Retry-After") == "1"
    assert len(log_lines(database)) == 2  # the refusal held no tokens: nothing to log

    faults(count=0)  # the server recovers
    # Retry-After's promise, by the clock the breaker decides by: its open period is over.
    services.wait_for_redis_time(redis_client, int(redis_client.hget(pool_keys("infergate:") + BREAKER + "ollama", "until")))
    probe = faulty.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert probe["statusCode"] == 200
    assert faulty.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] == 200
