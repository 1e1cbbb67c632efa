"""Input that is refused, not reinterpreted: JSON's types as sent, UTF-8 only, months the
calendar holds, one spelling per email address, prompt sizes counted as documented."""

from __future__ import annotations

import base64
import json

import pytest

from tests.handlers.conftest import body
from tests.support.functions import reset_instance_state


def refused(response: dict) -> str:
    assert response["statusCode"] == 400, response
    error = body(response)["error"]
    assert error["code"] == "invalid_request" and error["message"]
    return error["message"]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/chat", {"prompt": "hi", "max_tokens": "10"}),
        ("/v1/chat", {"prompt": "hi", "max_tokens": True}),
        ("/v1/chat", {"prompt": "hi", "max_tokens": 10.0}),
        ("/v1/chat", {"prompt": 42}),
        ("/v1/chat/completions", {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}],
                                  "stream": "yes"}),
        ("/v1/chat/completions", {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": "5"}),
        ("/v1/keys", {"name": "ci", "expires_in_days": "30"}),
    ],
)
def test_json_types_are_taken_as_sent(api, path, payload):
    key = api.register()["api_key"]
    response = api.call("POST", path, key=key, body=payload)
    assert response["statusCode"] == 400, body(response)


def test_a_body_that_is_not_utf8_is_refused_not_repaired(api):
    raw = base64.b64encode(b'{"email": "\xff\xfe@x.com"}').decode()
    assert refused(api.call("POST", "/v1/register", raw_body=raw, base64_encoded=True)) == "The request body must be UTF-8."


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "2026-13", "26-01", "2026-1"])
def test_a_month_the_calendar_cannot_hold_is_400(api, period):
    key = api.register()["api_key"]
    refused(api.call("GET", "/v1/usage", key=key, query={"period": period}))


@pytest.mark.parametrize(
    "email",
    [
        "ada\u200b@example.com",  # a zero-width space
        "ada@ex\u0430mple.com",  # a Cyrillic a among Latin letters
        "\u0430da@example.com",
        "\ufffd\ufffd@x.com",  # what a lenient decoder makes of bytes that were not UTF-8
        "ada@example",
        "ada@@example.com",
    ],
)
def test_an_address_that_cannot_exist_or_impersonates_another_is_refused(api, email):
    refused(api.call("POST", "/v1/register", body={"email": email}))


def test_another_spelling_of_an_address_is_the_same_account(api):
    api.register("ada@example.com")
    for spelling in ("ＡＤＡ@example.com", "ada@ｅｘａｍｐｌｅ.com", " Ada@EXAMPLE.com "):
        response = api.call("POST", "/v1/register", body={"email": spelling})
        assert response["statusCode"] == 409 and body(response)["error"]["code"] == "email_already_registered", spelling


def test_an_internationalised_address_is_kept_in_one_form(api):
    assert api.register("ada@bücher.de")["email"] == "ada@bücher.de"
    response = api.call("POST", "/v1/register", body={"email": "ada@xn--bcher-kva.de"})
    assert response["statusCode"] == 409


def test_a_prompt_too_large_for_the_plan_says_it_counts_bytes(api):
    key = api.register()["api_key"]
    emoji = "\U0001f600" * 5_000  # 5,000 characters, 20,000 bytes: within the 200,000 characters
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": emoji})
    assert response["statusCode"] == 400
    error = body(response)["error"]
    assert error["code"] == "prompt_too_large"
    assert "20000 bytes of UTF-8" in error["message"] and "20000 tokens per request" in error["message"]


def test_the_character_limit_counts_characters(api):
    key = api.register()["api_key"]
    message = refused(api.call("POST", "/v1/chat", key=key, body={"prompt": "x" * 200_001}))
    assert "200000 characters" in message


@pytest.fixture
def small_bodies(environment, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2048")
    reset_instance_state()


def test_a_body_over_max_request_bytes_is_refused_before_it_is_read(api, small_bodies):
    key = api.register()["api_key"]
    # 1,100 characters, 2,200 bytes of UTF-8: the limit counts bytes.
    messages = [{"role": "user", "content": "é" * 1_100}]
    response = api.call("POST", "/v1/chat/completions", key=key,
                        raw_body=json.dumps({"model": "smollm2:135m", "messages": messages}, ensure_ascii=False))
    assert response["statusCode"] == 413
    error = body(response)["error"]
    assert error["code"] == "request_too_large" and "2048 bytes" in error["message"]
    unauthenticated = api.call("POST", "/v1/register", body={"email": "ada@example.com", "padding": "x" * 3_000})
    assert unauthenticated["statusCode"] == 413


def test_a_body_within_max_request_bytes_is_served(api, small_bodies):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key,
                        raw_body=json.dumps({"prompt": "é" * 900, "max_tokens": 4}, ensure_ascii=False))
    assert response["statusCode"] == 200, body(response)
