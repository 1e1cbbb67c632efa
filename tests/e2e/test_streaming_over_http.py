"""Streamed chats over HTTP, through `make run` and `make run-lambda`, from a model server that
produces a token every 100 ms: tokens arrive as they are produced, and every way a stream ends
(a reader gone, the deadline, a model-server error) is charged for what was generated."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.support import services
from tests.support.accounting import log_lines
from tests.support.waiting import wait_for

TOKEN_SECONDS = 0.1
PROMPT = " ".join(f"word{index}" for index in range(40))  # the model answers "You said:" and the prompt, a word a token
PROMPT_BOUND = prompt_tokens_upper_bound([Message(role="user", content=PROMPT)])
STREAM_TIMEOUT = 2.5


@pytest.fixture(scope="module")
def slow_model() -> Iterator[str]:
    with services.model_server("--token-delay", str(TOKEN_SECONDS)) as url:
        yield url


@pytest.fixture(scope="module", params=["run", "run-lambda"])
def gateway(request, gateway_of, slow_model, mongo_uri):
    running = gateway_of(f"stream-{request.param}", target=request.param, model_url=slow_model,
                         OLLAMA_STREAM_TIMEOUT=str(STREAM_TIMEOUT))
    return running


def chat(max_tokens: int) -> dict:
    return {"model": "smollm2:135m", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": max_tokens, "stream_options": {"include_usage": True}}


def content_of(data: str) -> str | None:
    if data == "[DONE]":
        return None
    choices = json.loads(data).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or None


def timed_events(gateway, key: str, body: dict) -> list[tuple[float, str]]:
    """Each event's data, with the seconds since the request was sent when it arrived."""
    arrived = []
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-api-key": key}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == "text/event-stream"
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrived.append((time.monotonic() - started, line.removeprefix("data: ")))
    return arrived


def the_line(gateway, status: str) -> dict:
    return wait_for(lambda: next((line for line in log_lines(gateway.database()) if line["status"] == status), None),
                    timeout=30, what=f"a request log line with status {status}")


def usage(gateway, key: str) -> dict:
    return httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key}).json()


def test_tokens_arrive_as_the_model_produces_them(gateway):
    key = gateway.register()["api_key"]
    events = timed_events(gateway, key, chat(max_tokens=12))

    pieces = [(at, text) for at, data in events if (text := content_of(data))]
    assert len(pieces) == 12 and events[-1][1] == "[DONE]"
    first, last = pieces[0][0], pieces[-1][0]
    # Buffered, every piece would arrive at once at the end; produced 100 ms apart, 11 gaps lie between
    # the first and the last. Half of that leaves room for a loaded machine.
    assert last - first >= 11 * TOKEN_SECONDS / 2, pieces
    gaps = [later - earlier for (earlier, _), (later, _) in zip(pieces, pieces[1:])]
    assert sum(gap >= TOKEN_SECONDS / 4 for gap in gaps) >= len(gaps) // 2, gaps
    usage_chunk = json.loads(events[-2][1])["usage"]
    assert usage_chunk["completion_tokens"] == 12 and usage(gateway, key)["tokens_used"] == usage_chunk["total_tokens"]


def test_a_client_that_disconnects_is_charged_what_was_generated_and_the_model_stops_within_a_second(gateway):
    key = gateway.register()["api_key"]
    request = json.dumps(chat(max_tokens=30)).encode()
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"x-api-key: " + key.encode() + b"\r\nContent-Length: " + str(len(request)).encode()
                     + b"\r\n\r\n" + request)
        received = b""
        while received.count(b'"content":"') < 4:  # the role chunk's empty content, then three pieces
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    closed_at = datetime.now(UTC)

    line = the_line(gateway, "client_closed")
    assert 3 <= line["completion_tokens"] < 30, line
    assert line["prompt_tokens"] == PROMPT_BOUND
    at = line["created_at"] if line["created_at"].tzinfo else line["created_at"].replace(tzinfo=UTC)
    assert (at - closed_at).total_seconds() < 1.0, "the answer was stopped and charged within a second"
    spent = usage(gateway, key)
    assert (spent["tokens_used"], spent["tokens_reserved"]) == (PROMPT_BOUND + line["completion_tokens"], 0)


def test_a_stream_cut_by_its_deadline_ends_with_an_error_event_and_is_charged(gateway):
    key = gateway.register()["api_key"]
    events = timed_events(gateway, key, chat(max_tokens=40))  # 4 s of tokens against a 2.5 s deadline

    pieces = [text for _, data in events if (text := content_of(data))]
    error = json.loads(events[-1][1])["error"]
    assert error["code"] == "upstream_timeout" and "[DONE]" not in [data for _, data in events]
    charged = PROMPT_BOUND + len(pieces)
    assert f"The {charged} tokens used before it ended were charged." in error["message"]
    assert usage(gateway, key)["tokens_used"] == charged


def test_a_model_server_error_mid_stream_ends_with_an_error_event_and_is_charged(gateway, slow_model):
    key = gateway.register()["api_key"]
    httpx.post(f"{slow_model}/_devkit/faults", json={"mode": "break", "after_pieces": 3, "count": 1}).raise_for_status()
    events = timed_events(gateway, key, chat(max_tokens=20))

    pieces = [text for _, data in events if (text := content_of(data))]
    error = json.loads(events[-1][1])["error"]
    assert len(pieces) == 3 and error["code"] == "upstream_error"
    assert usage(gateway, key)["tokens_used"] == PROMPT_BOUND + 3


def test_the_openai_sdk_reads_the_tokens_as_they_come_and_raises_the_error_that_cuts_a_stream(gateway, slow_model):
    import openai

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.register()["api_key"], max_retries=0)
    started = time.monotonic()
    arrivals = [(time.monotonic() - started, chunk) for chunk in client.chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": PROMPT}], max_tokens=8, stream=True)]
    pieces = [at for at, chunk in arrivals if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) == 8 and pieces[-1] - pieces[0] >= 7 * TOKEN_SECONDS / 2

    httpx.post(f"{slow_model}/_devkit/faults", json={"mode": "break", "after_pieces": 2, "count": 1}).raise_for_status()
    received = []
    with pytest.raises(openai.APIError) as cut:
        for chunk in client.chat.completions.create(model="smollm2:135m", messages=[{"role": "user", "content": PROMPT}],
                                                    max_tokens=8, stream=True):
            received.extend(choice.delta.content for choice in chunk.choices if choice.delta.content)
    assert len(received) == 2 and "tokens used before it ended were charged" in cut.value.message


def test_a_completed_stream_is_replayed_whole_under_its_idempotency_key(gateway):
    key = gateway.register()["api_key"]
    headers = {"x-api-key": key, "Idempotency-Key": "stream-once"}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        first = http.post("/v1/chat", json={"prompt": PROMPT, "max_tokens": 5, "stream": True}, headers=headers)
        again = http.post("/v1/chat", json={"prompt": PROMPT, "max_tokens": 5, "stream": True}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text and again.text.rstrip().split("\n")[-2] == "event: done"
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert usage(gateway, key)["requests"] == 1
