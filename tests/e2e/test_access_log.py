"""One access line per request, over HTTP through `make run`: found by the caller's
x-request-id, with the route, status, latency, caller, model, tokens and outcome, and never
the prompt or the answer."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.support.waiting import wait_for

PROMPT = "a secret prompt about seven purple elephants"


@pytest.fixture(scope="module")
def gateway(gateway_of, faulty_ollama_url):
    return gateway_of("access-log", model_url=faulty_ollama_url)


@pytest.fixture(scope="module")
def account(gateway) -> dict:
    return gateway.register()


def access_lines(gateway, request_id: str) -> list[dict]:
    found = []
    for text in gateway.output().splitlines():
        if request_id in text and text.startswith("{"):
            line = json.loads(text)
            if line.get("message") == "request" and line.get("correlation_id") == request_id:
                found.append(line)
    return found


def the_access_line(gateway, request_id: str) -> dict:
    """The one access line of the request sent with `request_id`, once it is written."""
    lines = wait_for(lambda: access_lines(gateway, request_id), timeout=30, what=f"the access line of {request_id}")
    assert len(lines) == 1, lines
    return lines[0]


def send(gateway, method: str, path: str, *, key: str | None = None, **options) -> tuple[str, httpx.Response]:
    request_id = f"acc-{uuid.uuid4().hex[:12]}"
    headers = {"x-request-id": request_id, **({"x-api-key": key} if key else {}), **options.pop("headers", {})}
    return request_id, httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=60, **options)


def test_a_chat_has_one_line_with_its_caller_model_tokens_and_outcome_and_no_text(gateway, account):
    request_id, response = send(gateway, "POST", "/v1/chat", key=account["api_key"], json={"prompt": PROMPT})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id

    line = the_access_line(gateway, request_id)
    usage = response.json()["usage"]
    assert (line["route"], line["method"], line["status"], line["outcome"]) == ("/v1/chat", "POST", 200, "ok")
    assert (line["user_id"], line["key_id"]) == (account["user_id"], account["key_id"])
    assert (line["model"], line["prompt_tokens"], line["completion_tokens"]) == (
        "smollm2:135m", usage["prompt_tokens"], usage["completion_tokens"])
    assert line["latency_ms"] > 0 and line["api_request_id"] and "replayed" not in line
    text = json.dumps(line)
    assert "elephants" not in text and response.json()["response"] not in text


def test_an_openai_chat_names_its_end_user(gateway, account):
    request_id, response = send(gateway, "POST", "/v1/chat/completions", key=account["api_key"], json={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": PROMPT}], "user": "end-user-7"})
    assert response.status_code == 200
    line = the_access_line(gateway, request_id)
    assert (line["route"], line["end_user"], line["outcome"]) == ("/v1/chat/completions", "end-user-7", "ok")


def test_a_key_refused_by_the_authorizer_has_one_line_from_it(gateway):
    request_id, response = send(gateway, "GET", "/v1/usage", key="igk_" + "x" * 40)
    assert response.status_code == 401
    line = the_access_line(gateway, request_id)
    assert (line["route"], line["status"], line["outcome"]) == ("/v1/usage", 401, "invalid_api_key")


def test_a_bad_body_has_one_line_with_its_code(gateway, account):
    request_id, response = send(gateway, "POST", "/v1/chat", key=account["api_key"], json={"prompt": ""})
    assert response.status_code == 400
    line = the_access_line(gateway, request_id)
    assert (line["status"], line["outcome"], line["user_id"]) == (400, "invalid_request", account["user_id"])


def test_a_model_server_failure_has_one_line_with_the_upstream_error(gateway, account, faults):
    faults(mode="status", status=500)
    request_id, response = send(gateway, "POST", "/v1/chat", key=account["api_key"], json={"prompt": PROMPT})
    assert response.status_code == 502
    line = the_access_line(gateway, request_id)
    assert (line["status"], line["outcome"], line["model"]) == (502, "upstream_error", "smollm2:135m")


def test_a_replay_has_a_line_of_its_own_marked_replayed(gateway, account):
    body, key = {"prompt": PROMPT, "max_tokens": 4}, {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first_id, first = send(gateway, "POST", "/v1/chat", key=account["api_key"], json=body, headers=key)
    again_id, again = send(gateway, "POST", "/v1/chat", key=account["api_key"], json=body, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"

    assert "replayed" not in the_access_line(gateway, first_id)
    replay = the_access_line(gateway, again_id)
    assert (replay["status"], replay["replayed"], replay["model"]) == (200, True, "smollm2:135m")

    streamed, key = {**body, "stream": True}, {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    send(gateway, "POST", "/v1/chat", key=account["api_key"], json=streamed, headers=key)
    again_id, again = send(gateway, "POST", "/v1/chat", key=account["api_key"], json=streamed, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    replay = the_access_line(gateway, again_id)
    assert (replay["replayed"], replay["model"]) == (True, "smollm2:135m"), "a streamed replay names its model too"


def test_a_stream_is_logged_once_when_it_ends(gateway, account):
    request_id, response = send(gateway, "POST", "/v1/chat", key=account["api_key"],
                                json={"prompt": PROMPT, "stream": True, "max_tokens": 5})
    assert response.status_code == 200
    line = the_access_line(gateway, request_id)
    assert (line["status"], line["outcome"], line["completion_tokens"]) == (200, "ok", 5)
