"""Rate-limit headers, per-IP registration limits, Redis outages and the usage report."""

from __future__ import annotations

import time
import uuid

import pytest
from devkit.backends import free_port

from tests.handlers.conftest import body, header, received
from tests.support.functions import reset_instance_state

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture
def settings(monkeypatch):
    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        reset_instance_state()

    return apply


def test_every_authenticated_response_carries_rate_limit_headers(api, settings):
    settings(RATE_LIMIT_RPM="5")
    key = api.register()["api_key"]
    ok = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 5})
    assert [header(ok, name) for name in RATE_HEADERS] == ["5", "4", "60"]
    assert header(ok, "X-RateLimit-Limit-Tokens") == "20000"
    assert int(header(ok, "X-RateLimit-Remaining-Tokens")) < 20000

    usage = api.call("GET", "/v1/usage", key=key)
    assert header(usage, "X-RateLimit-Remaining") == "3"

    failed = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "model": "ghost"})
    assert failed["statusCode"] == 400 and header(failed, "X-RateLimit-Remaining") == "2"


def test_a_429_carries_retry_after_and_the_headers(api, settings):
    settings(RATE_LIMIT_RPM="1")
    key = api.register()["api_key"]
    api.call("GET", "/v1/usage", key=key)
    refused = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert refused["statusCode"] == 429 and body(refused)["error"]["code"] == "rate_limited"
    assert 1 <= int(header(refused, "Retry-After")) <= 60
    assert header(refused, "X-RateLimit-Remaining") == "0"


def test_registration_is_limited_per_source_ip(api, settings):
    settings(REGISTER_RATE_LIMIT_PER_HOUR="2")
    assert api.register("a@example.com") and api.register("b@example.com")
    refused = api.call("POST", "/v1/register", body={"email": "c@example.com"})
    assert refused["statusCode"] == 429 and body(refused)["error"]["code"] == "rate_limited"
    assert int(header(refused, "Retry-After")) > 60


@pytest.mark.parametrize(("fail_open", "status"), [("true", 200), ("false", 503)])
def test_with_redis_unreachable_the_setting_decides(api, settings, fail_open, status):
    key = api.register()["api_key"]
    settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT_FAIL_OPEN=fail_open)
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 5})
    assert response["statusCode"] == status
    if status == 503:
        assert body(response)["error"]["code"] == "service_unavailable"


def test_registration_fails_closed_without_redis_whatever_the_setting(api, settings):
    settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT_FAIL_OPEN="true")
    refused = api.call("POST", "/v1/register", body={"email": "many@example.com"})
    assert refused["statusCode"] == 503 and body(refused)["error"]["code"] == "service_unavailable"
    assert header(refused, "Retry-After") == "1"


def test_registration_without_mongodb_is_a_prompt_503_and_a_log_line(api, settings, caplog):
    from infergate.stores.mongo import CALL_SECONDS

    settings(MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    started = time.monotonic()
    refused = api.call("POST", "/v1/register", body={"email": "later@example.com"})
    assert time.monotonic() - started < CALL_SECONDS + 2
    assert refused["statusCode"] == 503 and body(refused)["error"]["code"] == "service_unavailable"
    assert header(refused, "Retry-After") == "1"
    assert any(getattr(record, "error_code", None) == "service_unavailable" for record in caplog.records)


def test_quota_holds_without_redis(api, settings):
    settings(DEFAULT_MONTHLY_TOKEN_QUOTA="100")
    key = api.register()["api_key"]
    settings(DEFAULT_MONTHLY_TOKEN_QUOTA="100", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    statuses = [api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_usage_reports_holds_and_breakdowns_and_past_months(api):
    key = api.register()["api_key"]
    api.call("POST", "/v1/chat", key=key, body={"prompt": "one two", "max_tokens": 5})
    api.call("POST", "/v1/chat", key=key, body={"prompt": "three", "model": "tiny:latest", "max_tokens": 5})
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_reserved"] == 0
    assert set(usage["by_model"]) == {"smollm2:135m", "tiny:latest"}
    assert sum(t["tokens"] for t in usage["by_model"].values()) == usage["tokens_used"]
    assert sum(t["requests"] for t in usage["by_day"].values()) == usage["requests"] == 2

    past = body(api.call("GET", "/v1/usage", key=key, query={"period": "2020-01"}))
    assert (past["period"], past["tokens_used"], past["resets_at"]) == ("2020-01", 0, "2020-02-01T00:00:00Z")
    for bad in ("2020-13", "last-month", "2999-01"):
        response = api.call("GET", "/v1/usage", key=key, query={"period": bad})
        assert response["statusCode"] == 400, bad
        assert body(response)["error"]["code"] == "invalid_request"


def test_every_request_is_counted_once_admitted_refused_or_malformed(api, settings):
    settings(RATE_LIMIT_RPM="1")

    def total() -> int:
        return body(api.call("GET", "/metrics"))["totalRequests"]

    key = api.register()["api_key"]
    before = total()  # counted after it read the total
    statuses = [
        api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 5})["statusCode"],  # admitted
        api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 5})["statusCode"],  # limited
        api.call("POST", "/v1/chat", key=key, body={"prompt": ""})["statusCode"],  # refused before admission
        api.call("GET", "/health")["statusCode"],
    ]
    assert statuses == [200, 429, 400, 200]
    assert total() == before + 1 + len(statuses)


def test_a_users_requests_per_minute_hold_across_all_their_keys(api, settings):
    """More keys, or keys kept alive by a rotation's grace period, do not add up to more requests."""
    settings(RATE_LIMIT_RPM="3", RATE_LIMIT_USER_RPM="4")
    account = api.register()
    first = account["api_key"]
    rotated = api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=first, body={"grace_seconds": 600})
    second = body(rotated)["api_key"]  # the user's 1st request of 4; the first key's 1st of 3

    assert api.call("GET", "/v1/usage", key=first)["statusCode"] == 200  # 2 of 4; 2 of 3
    nearer = api.call("GET", "/v1/usage", key=second)  # 3 of 4; 1 of 3
    assert [header(nearer, "X-RateLimit-Limit"), header(nearer, "X-RateLimit-Remaining")] == ["4", "1"], (
        "the headers speak of the limit nearest its end")
    assert api.call("GET", "/v1/usage", key=first)["statusCode"] == 200  # 4 of 4; 3 of 3
    refused = api.call("GET", "/v1/usage", key=second)  # its own key has 2 left, the user none
    assert refused["statusCode"] == 429
    assert "4 requests per minute across your keys" in body(refused)["error"]["message"]
    assert header(refused, "X-RateLimit-Remaining") == "0"


STREAM = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}


def in_flight(api, key: str, count: int) -> list:
    """`count` streams admitted and not yet read: requests in flight until they are."""
    streams = [api.invoke("POST", "/v1/chat/completions", key=key, body=STREAM) for _ in range(count)]
    assert [stream.prelude["statusCode"] for stream in streams] == [200] * count
    return streams


def assert_one_more_is_refused_until_one_ends(api, key: str, streams: list) -> None:
    refused = api.call("POST", "/v1/chat/completions", key=key, body=STREAM)
    assert refused["statusCode"] == 429, refused
    assert body(refused)["error"]["code"] == "too_many_concurrent_requests"
    received(streams.pop())
    assert api.call("POST", "/v1/chat/completions", key=key, body=STREAM)["statusCode"] == 200
    for stream in streams:
        received(stream)


def test_requests_in_flight_hold_with_redis_away(api, settings):
    key = api.register()["api_key"]
    settings(MAX_CONCURRENT_REQUESTS="2", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT_FAIL_OPEN="true")
    assert_one_more_is_refused_until_one_ends(api, key, in_flight(api, key, 2))


def test_requests_in_flight_hold_when_redis_loses_its_data(api, settings, redis_client):
    prefix = f"lost-{uuid.uuid4().hex[:8]}:"
    settings(MAX_CONCURRENT_REQUESTS="2", REDIS_KEY_PREFIX=prefix)
    key = api.register(f"{prefix[:-1]}@example.com")["api_key"]
    streams = in_flight(api, key, 2)
    redis_client.delete(*redis_client.scan_iter(match=f"{prefix}*", count=1000))  # a failover to an empty replica
    assert_one_more_is_refused_until_one_ends(api, key, streams)


@pytest.mark.model
def test_a_prompt_the_bytes_would_refuse_fits_when_the_models_tokenizer_counts_it(api, settings, tmp_path):
    """6,000 emoji: 24,000 bytes, but 18,000 of SmolLM2's tokens, within the free plan's 20,000 a request."""
    from devkit.tokenizer_export import smollm2_tokenizer

    key = api.register()["api_key"]
    chat = {"prompt": "😀" * 6000, "max_tokens": 1}
    refused = api.call("POST", "/v1/chat", key=key, body=chat)
    assert refused["statusCode"] == 400 and body(refused)["error"]["code"] == "prompt_too_large"
    assert "a token covers at least one byte" in body(refused)["error"]["message"]

    settings(MODEL_TOKENIZERS=f'{{"smollm2:135m": "{smollm2_tokenizer(tmp_path)}"}}')
    assert api.call("POST", "/v1/chat", key=key, body=chat)["statusCode"] == 200
