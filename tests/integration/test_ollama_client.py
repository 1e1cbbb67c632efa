"""The gateway's Ollama client against real HTTP servers."""

from __future__ import annotations

import time

import httpx
import pytest
from devkit.backends import free_port
from devkit.ollama.engines import DeterministicEngine

from infergate.errors import ModelNotFound, UpstreamError, UpstreamTimeout
from infergate.llm.ollama import OllamaClient
from infergate.domain.messages import Message
from tests.support import services

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="what is two plus two")]


def client(url: str, timeout: float = 5) -> OllamaClient:
    return OllamaClient(url, connect_timeout=1, timeout=timeout)


def test_a_streamed_answer_is_assembled_with_ollamas_own_counts(ollama_url):
    completion = client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=100, request_id="rid-1")
    wire = [{"role": m.role, "content": m.content} for m in MESSAGES]
    assert completion.content == " ".join(DeterministicEngine.answer_words(wire))
    assert completion.prompt_tokens == DeterministicEngine.count_prompt_tokens(wire)
    assert completion.completion_tokens == len(DeterministicEngine.answer_words(wire))
    assert completion.done_reason == "stop"


def test_max_tokens_reaches_ollama_as_num_predict(ollama_url):
    completion = client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2, request_id="rid-2")
    assert (completion.content, completion.completion_tokens, completion.done_reason) == ("You said:", 2, "length")


def test_the_request_id_reaches_ollama(ollama_url):
    client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=1, request_id="trace-me-42")
    seen = httpx.get(f"{ollama_url}/_devkit/requests").json()
    assert any(r["x-request-id"] == "trace-me-42" and r["body"]["options"]["num_predict"] == 1 for r in seen)


def test_an_unknown_model_is_named(ollama_url):
    with pytest.raises(ModelNotFound, match="nope"):
        client(ollama_url).chat(model="nope", messages=MESSAGES, max_tokens=5, request_id="r")


def test_nothing_listening_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        client(f"http://127.0.0.1:{free_port()}").chat(model="m", messages=MESSAGES, max_tokens=5, request_id="r")


def test_an_answer_slower_than_the_deadline_is_cut_off_at_the_deadline():
    with services.model_server("--token-delay", "0.2") as slow_url:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            client(slow_url, timeout=0.5).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="r")
        assert time.monotonic() - started < 1.5
