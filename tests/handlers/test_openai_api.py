"""POST /v1/chat/completions and GET /v1/models in OpenAI's shapes (the SDK itself is in tests/e2e)."""

from __future__ import annotations

import json

import pytest

from tests.handlers.conftest import body, header
from tests.support.functions import reset_instance_state

COMPLETIONS = "/v1/chat/completions"


def test_a_completion_has_openais_shape_and_is_metered_like_a_chat(api):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "ping"}]})
    assert response["statusCode"] == 200, body(response)
    completion = body(response)
    assert completion["object"] == "chat.completion" and completion["id"].startswith("chatcmpl-")
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "You said: ping", "refusal": None}
    assert "system_fingerprint" not in completion, "absent rather than null, as OpenAI's schema has it"
    assert completion["choices"][0]["finish_reason"] == "stop"
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == completion["usage"]["total_tokens"] and usage["requests"] == 1
    assert header(response, "X-RateLimit-Limit") == "60"


def test_a_streamed_completion_is_server_sent_events_ending_in_done(api):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "a b"}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 3})
    assert response["statusCode"] == 200
    assert header(response, "Content-Type") == "text/event-stream"
    events = [line.removeprefix("data: ") for line in response["body"].split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "You said: a"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n=1"),
        ({"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
        ({"model": "smollm2:135m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages"),
    ],
)
def test_what_cannot_be_served_is_an_openai_style_400(api, payload, fragment):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body=payload)
    assert response["statusCode"] == 400
    error = body(response)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request" and fragment in error["message"]


def test_an_unknown_model_is_refused_naming_it_before_any_token_is_held(api):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body={"model": "ghost:7b", "messages": [{"role": "user", "content": "hi"}]})
    assert response["statusCode"] == 400
    assert body(response)["error"]["code"] == "model_not_found" and "ghost:7b" in body(response)["error"]["message"]
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_reserved"] == 0


def test_the_allow_list_limits_models_for_chats_and_the_list(api, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", "smollm2:135m")
    reset_instance_state()
    key = api.register()["api_key"]
    refused = api.call("POST", COMPLETIONS, key=key, body={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    assert refused["statusCode"] == 400 and "tiny" in body(refused)["error"]["message"]
    refused_native = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "model": "tiny:latest"})
    assert refused_native["statusCode"] == 400
    models = body(api.call("GET", "/v1/models", key=key))
    assert [m["id"] for m in models["data"]] == ["smollm2:135m"]


def test_models_lists_what_the_server_has(api):
    key = api.register()["api_key"]
    models = body(api.call("GET", "/v1/models", key=key))
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {"smollm2:135m", "tiny:latest"}
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in models["data"])


def test_quota_exceeded_is_a_429_in_openais_shape(api, monkeypatch):
    monkeypatch.setenv("DEFAULT_MONTHLY_TOKEN_QUOTA", "100")
    reset_instance_state()
    key = api.register()["api_key"]
    payload = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}]}
    responses = [api.call("POST", COMPLETIONS, key=key, body=payload) for _ in range(4)]
    assert [r["statusCode"] for r in responses] == [200, 200, 200, 429]
    response = responses[-1]
    assert body(response)["error"]["type"] == "rate_limit_error" and body(response)["error"]["code"] == "quota_exceeded"
    # Retry-After is when the month ends: the SDKs (OpenAI's, Anthropic's) would sleep that long, so they are told not to.
    assert int(header(response, "Retry-After")) > 0 and header(response, "x-should-retry") == "false"
