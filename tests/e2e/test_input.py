"""Input that is refused, not reinterpreted, over HTTP: JSON's own types, UTF-8 only, months
the calendar holds, one account per mailbox, sizes counted as documented."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("body", [
    b'{"prompt": "hi", "max_tokens": "10"}',
    b'{"prompt": "hi", "max_tokens": true}',
    b'{"prompt": "hi", "max_tokens": 10.5}',
    b'{"prompt": "\xff\xfe hi"}',
])
def test_a_chat_body_is_taken_as_sent_or_refused(stack, http, body):
    key = stack.register(http)["api_key"]
    response = http.post("/v1/chat", content=body, headers={"x-api-key": key, "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_bytes_that_are_not_utf8_never_become_an_account(http):
    response = http.post("/v1/register", content=b'{"email": "\xff\xfe@x.com"}', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == {"message": "The request body must be UTF-8.", "type": "invalid_request_error",
                                        "param": None, "code": "invalid_request"}


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "2026-00"])
def test_an_impossible_month_is_400_not_500(stack, http, period):
    key = stack.register(http)["api_key"]
    response = http.get("/v1/usage", params={"period": period}, headers={"x-api-key": key})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_one_person_gets_one_account_whatever_the_spelling(http):
    assert http.post("/v1/register", json={"email": "grace@example.org"}).status_code == 201
    for spelling in ("ＧＲＡＣＥ@example.org", "grace@ｅｘａｍｐｌｅ.org", "grace\u200b@example.org",
                     "grace@ex\u0430mple.org"):
        response = http.post("/v1/register", json={"email": spelling})
        assert response.status_code in (400, 409), spelling
        assert response.json()["error"]["code"] in ("invalid_request", "email_already_registered")


def test_a_prompt_is_measured_as_documented(stack, http):
    key = stack.register(http)["api_key"]
    emoji = http.post("/v1/chat", json={"prompt": "\U0001f642" * 5_000}, headers={"x-api-key": key})
    assert emoji.status_code == 400 and emoji.json()["error"]["code"] == "prompt_too_large"
    assert "bytes of UTF-8" in emoji.json()["error"]["message"]
    too_long = http.post("/v1/chat", json={"prompt": "a" * 200_001}, headers={"x-api-key": key})
    assert too_long.status_code == 400 and "200000 characters" in too_long.json()["error"]["message"]
