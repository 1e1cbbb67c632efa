"""When the Ollama client retries: only if the request cannot have reached the server."""

from __future__ import annotations

import json

import httpx
import pytest

from infergate.errors import UpstreamError
from infergate.llm import ollama
from infergate.llm.ollama import OllamaClient
from infergate.domain.messages import Message

FINAL = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 5, "eval_count": 1}
PIECE = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": False}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(ollama.time, "sleep", lambda seconds: None)


def client(failures: list[Exception]) -> tuple[OllamaClient, list[int]]:
    attempts: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if failures:
            raise failures.pop(0)
        body = "\n".join(json.dumps(chunk) for chunk in (PIECE, FINAL)) + "\n"
        return httpx.Response(200, content=body, headers={"content-type": "application/x-ndjson"})

    http = httpx.Client(base_url="http://ollama.test", transport=httpx.MockTransport(handle))
    return OllamaClient("http://ollama.test", connect_timeout=1, timeout=5, http=http), attempts


def chat(ollama_client: OllamaClient):
    return ollama_client.chat(model="m", messages=[Message(role="user", content="x")], max_tokens=5, request_id="r")


def test_a_refused_connection_is_retried():
    ollama_client, attempts = client([httpx.ConnectError("refused"), httpx.ConnectTimeout("no route")])
    assert chat(ollama_client).content == "hi"
    assert len(attempts) == 3


def test_retries_give_up_after_two():
    ollama_client, attempts = client([httpx.ConnectError("refused")] * 5)
    with pytest.raises(UpstreamError, match="could not be reached"):
        chat(ollama_client)
    assert len(attempts) == 3


@pytest.mark.parametrize("failure", [httpx.ReadError("reset by peer"), httpx.RemoteProtocolError("disconnected"),
                                     httpx.WriteError("broken pipe")])
def test_nothing_that_may_have_reached_ollama_is_retried(failure):
    ollama_client, attempts = client([failure])
    with pytest.raises(UpstreamError):
        chat(ollama_client)
    assert len(attempts) == 1
