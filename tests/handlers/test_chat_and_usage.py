from datetime import UTC, datetime

import httpx
from devkit.backends import free_port
from devkit.ollama.engines import DeterministicEngine

from tests.handlers.conftest import body, header, received


def test_a_chat_is_answered_and_charged_ollamas_counts(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "tell me a story", "max_tokens": 50})
    assert response["statusCode"] == 200, response
    chat = body(response)
    assert chat["response"] == "You said: tell me a story"
    messages = [{"role": "user", "content": "tell me a story"}]
    expected_prompt = DeterministicEngine.count_prompt_tokens(messages)
    assert chat["usage"] == {"prompt_tokens": expected_prompt, "completion_tokens": 6, "total_tokens": expected_prompt + 6}
    assert chat["model"] == "smollm2:135m" and chat["id"]

    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == expected_prompt + 6
    assert usage["requests"] == 1
    assert usage["tokens_remaining"] == 100000 - usage["tokens_used"]
    assert usage["token_quota"] == 100000


def test_messages_and_a_named_model_are_passed_on(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={
        "model": "tiny:latest", "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}]})
    assert response["statusCode"] == 200
    assert body(response)["model"] == "tiny:latest"


def test_the_request_id_reaches_the_model_server(api, ollama_url):
    key = api.register()["api_key"]
    api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"}, headers={"x-request-id": "follow-me-7"})
    assert any(r["x-request-id"] == "follow-me-7" for r in httpx.get(f"{ollama_url}/_devkit/requests").json())


def test_a_user_out_of_tokens_gets_429_quota_exceeded(api, monkeypatch):
    monkeypatch.setenv("DEFAULT_MONTHLY_TOKEN_QUOTA", "100")
    from tests.support.functions import reset_instance_state

    reset_instance_state()
    key = api.register()["api_key"]
    # Each chat costs 10 tokens, but 74 must remain to cover the prompt's bound: three fit.
    responses = [api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 500}) for _ in range(4)]
    assert [r["statusCode"] for r in responses] == [200, 200, 200, 429]
    assert body(responses[-1])["error"]["code"] == "quota_exceeded"
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["tokens_used"], usage["requests"], usage["tokens_remaining"]) == (30, 3, 70)
    # Retry-After: when the month resets.
    resets_in = (datetime.fromisoformat(usage["resets_at"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    assert abs(int(header(responses[-1], "Retry-After")) - resets_in) < 60


def test_over_the_rate_limit_is_429_with_retry_after(api, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_RPM", "2")
    from tests.support.functions import reset_instance_state

    reset_instance_state()
    key = api.register()["api_key"]
    statuses = [api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 1})["statusCode"] for _ in range(2)]
    refused = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 1})
    assert statuses == [200, 200]
    assert refused["statusCode"] == 429
    assert body(refused)["error"]["code"] == "rate_limited"
    assert 1 <= int(header(refused, "Retry-After")) <= 60


def test_an_unreachable_model_server_is_502_and_costs_nothing(api, monkeypatch):
    monkeypatch.setenv("OLLAMA_URL", f"http://127.0.0.1:{free_port()}")
    from tests.support.functions import reset_instance_state

    reset_instance_state()
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert response["statusCode"] == 502
    assert body(response)["error"]["code"] == "upstream_error"
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["tokens_used"], usage["tokens_remaining"]) == (0, 100000)


def test_an_unknown_model_is_400_naming_it(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "model": "ghost:1b"})
    assert response["statusCode"] == 400
    assert "ghost:1b" in body(response)["error"]["message"]


def test_invalid_chat_bodies_are_400(api):
    key = api.register()["api_key"]
    for payload in ({}, {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, {"prompt": "a", "max_tokens": -1}):
        response = api.call("POST", "/v1/chat", key=key, body=payload)
        assert response["statusCode"] == 400
        assert body(response)["error"]["code"] == "invalid_request"


def test_usage_for_a_new_user_is_a_clean_month(api):
    key = api.register()["api_key"]
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == 0 and usage["requests"] == 0
    assert usage["tokens_remaining"] == usage["token_quota"] == 100000
    assert usage["resets_at"].endswith("T00:00:00Z") and usage["resets_at"][8:10] == "01"


def test_a_model_that_generates_nothing_before_the_deadline_is_504_and_costs_nothing(api, monkeypatch):
    from tests.support import services
    from tests.support.functions import reset_instance_state

    with services.model_server("--token-delay", "1") as slow_model:
        monkeypatch.setenv("OLLAMA_URL", slow_model)
        monkeypatch.setenv("OLLAMA_TIMEOUT", "0.3")
        reset_instance_state()
        key = api.register()["api_key"]
        response = api.call("POST", "/v1/chat", key=key, body={"prompt": "a b c d e f"})
    assert response["statusCode"] == 504
    assert body(response)["error"]["code"] == "upstream_timeout"
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_used"] == 0


def test_an_unreachable_database_is_503_not_a_crash(api, monkeypatch):
    from tests.support.functions import reset_instance_state

    key = api.register()["api_key"]
    policy = api.authorize("POST", "/v1/chat", {"x-api-key": key})
    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    reset_instance_state()
    from tests.support.functions import LambdaContext
    from tests.support.lambda_events import handler_context, proxy_event

    event = proxy_event("POST", "/v1/chat", body={"prompt": "hi"}, headers={"x-api-key": key},
                        authorizer=handler_context(policy))
    response = received(api.handler("POST", "/v1/chat").lambda_handler(event, LambdaContext()))
    assert response["statusCode"] == 503
    assert body(response)["error"]["code"] == "service_unavailable"
    assert header(response, "Retry-After") == "1"
