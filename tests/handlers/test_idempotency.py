"""Idempotency-Key: answered once, charged once, also for a retry that races the first."""

from __future__ import annotations

import os
import threading
import uuid

from tests.handlers.conftest import body, header
from tests.support.functions import reset_instance_state


def usage(api, key):
    return body(api.call("GET", "/v1/usage", key=key))


def test_a_retry_gets_the_first_response_and_is_charged_once(api):
    key = api.register()["api_key"]
    first = api.call("POST", "/v1/chat", key=key, body={"prompt": "hello"}, headers={"Idempotency-Key": "order-1"})
    again = api.call("POST", "/v1/chat", key=key, body={"prompt": "hello"}, headers={"Idempotency-Key": "order-1"})
    assert first["statusCode"] == again["statusCode"] == 200
    assert body(first) == body(again)
    assert header(again, "Idempotent-Replayed") == "true" and header(first, "Idempotent-Replayed") is None
    assert usage(api, key)["requests"] == 1
    assert usage(api, key)["tokens_used"] == body(first)["usage"]["total_tokens"]


def test_the_same_key_with_another_body_is_422(api):
    key = api.register()["api_key"]
    api.call("POST", "/v1/chat", key=key, body={"prompt": "hello"}, headers={"Idempotency-Key": "k"})
    reused = api.call("POST", "/v1/chat", key=key, body={"prompt": "goodbye"}, headers={"Idempotency-Key": "k"})
    assert reused["statusCode"] == 422 and body(reused)["error"]["code"] == "idempotency_key_reused"
    assert usage(api, key)["requests"] == 1


def test_keys_belong_to_their_user(api):
    mine, theirs = api.register("a@example.com")["api_key"], api.register("b@example.com")["api_key"]
    one = api.call("POST", "/v1/chat", key=mine, body={"prompt": "hello"}, headers={"Idempotency-Key": "shared"})
    other = api.call("POST", "/v1/chat", key=theirs, body={"prompt": "hello"}, headers={"Idempotency-Key": "shared"})
    assert body(one)["id"] != body(other)["id"]


def test_a_retry_racing_the_first_waits_for_it_and_gets_its_answer(api, monkeypatch):
    from tests.support import services

    with services.model_server("--token-delay", "0.2") as slow_model:
        monkeypatch.setenv("OLLAMA_URL", slow_model)
        reset_instance_state()
        key = api.register()["api_key"]
        results: list[dict] = []

        def send() -> None:
            results.append(api.call("POST", "/v1/chat", key=key, body={"prompt": "one two three"},
                                    headers={"Idempotency-Key": "race"}))

        threads = [threading.Thread(target=send) for _ in range(3)]
        threads[0].start()
        services.wait_until_the_model_is_asked(slow_model)  # the first is running: the others race it
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join()
    assert [r["statusCode"] for r in results] == [200, 200, 200]
    assert len({body(r)["id"] for r in results}) == 1
    assert usage(api, key)["requests"] == 1


def test_a_failed_request_leaves_the_key_free_for_a_retry(api, monkeypatch, faulty_ollama_url, faults):
    monkeypatch.setenv("OLLAMA_URL", faulty_ollama_url)
    reset_instance_state()
    key = api.register()["api_key"]
    faults(mode="status", status=500)
    failed = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"}, headers={"Idempotency-Key": "retry-me"})
    retried = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"}, headers={"Idempotency-Key": "retry-me"})
    assert (failed["statusCode"], retried["statusCode"]) == (502, 200)
    assert header(retried, "Idempotent-Replayed") is None
    assert usage(api, key)["requests"] == 1


def test_a_malformed_key_is_400(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"}, headers={"Idempotency-Key": "x" * 300})
    assert response["statusCode"] == 400


def test_replays_count_under_the_keys_request_limit_with_current_headers(api, monkeypatch, database):
    from tests.support.accounting import log_lines

    monkeypatch.setenv("RATE_LIMIT_RPM", "3")
    reset_instance_state()
    key = api.register()["api_key"]
    same = {"body": {"prompt": "hello"}, "headers": {"Idempotency-Key": "order-9"}}
    first = api.call("POST", "/v1/chat", key=key, **same)
    replays = [api.call("POST", "/v1/chat", key=key, **same) for _ in range(4)]
    assert header(first, "X-RateLimit-Remaining") == "2"
    assert [header(replay, "X-RateLimit-Remaining") for replay in replays[:2]] == ["1", "0"]
    assert [replay["statusCode"] for replay in replays] == [200, 200, 429, 429]
    assert body(replays[2])["error"]["code"] == "rate_limited" and header(replays[2], "Retry-After")
    assert len(log_lines(database)) == 1, "replays are answered, not charged"



def lose_redis_data(redis_client, prefix: str) -> None:
    """What a failover to an empty replica, or a FLUSHALL, does to this gateway's keys."""
    names = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    assert names, "the gateway wrote to Redis"
    redis_client.delete(*names)


def test_a_retry_after_redis_lost_its_data_is_still_a_replay_charged_once(api, redis_client, monkeypatch):
    monkeypatch.setenv("REDIS_KEY_PREFIX", f"lost-{uuid.uuid4().hex[:8]}:")
    reset_instance_state()
    key = api.register(f"lost-{uuid.uuid4().hex[:6]}@example.com")["api_key"]
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
    for stream in (False, True):
        request = {"key": key, "body": {**chat, "stream": stream}, "headers": {"Idempotency-Key": f"lost-{stream}"}}
        first = api.call("POST", "/v1/chat/completions", **request)
        lose_redis_data(redis_client, os.environ["REDIS_KEY_PREFIX"])
        again = api.call("POST", "/v1/chat/completions", **request)
        assert first["statusCode"] == again["statusCode"] == 200
        assert header(again, "Idempotent-Replayed") == "true", f"stream={stream}: answered again"
        assert again["body"] == first["body"]
    assert usage(api, key)["requests"] == 2, "each answered once, charged once"
