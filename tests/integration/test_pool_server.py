"""The development model server as one server of a pool: its slots and queue, models that load
on first use (GET /api/ps), its OpenAI-compatible routes, and an API key."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.support import services

CHAT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hello there"}]}


def test_no_more_requests_are_served_at_once_than_its_slots_and_a_full_queue_is_503():
    with services.model_server("--slots", "2", "--max-queue", "1", "--token-delay", "0.05") as url:
        answers: list[int] = []
        barrier = threading.Barrier(5)

        def chat() -> None:
            barrier.wait()
            answers.append(httpx.post(f"{url}/api/chat", json={**CHAT, "stream": False}, timeout=30).status_code)

        threads = [threading.Thread(target=chat) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = httpx.get(f"{url}/_devkit/stats").json()
        assert stats["max_in_flight"] == 2 and stats["slots"] == 2
        assert sorted(answers) == [200, 200, 200, 503, 503], "two served, one waited, the rest refused"


def test_a_model_not_loaded_loads_on_its_first_request_and_then_is_listed_by_ps():
    with services.model_server("--loaded", "smollm2:135m", "--load-seconds", "0.3") as url:
        assert [m["name"] for m in httpx.get(f"{url}/api/ps").json()["models"]] == ["smollm2:135m"]
        first = httpx.post(f"{url}/api/chat", json={**CHAT, "model": "tiny:latest", "stream": False})
        assert first.status_code == 200
        assert {m["name"] for m in httpx.get(f"{url}/api/ps").json()["models"]} == {"smollm2:135m", "tiny:latest"}
        stats = httpx.post(f"{url}/_devkit/stats").json()
        assert stats["requests"] == {} and stats["max_in_flight"] == 0, "counting starts afresh"


def test_the_openai_routes_answer_as_vllm_does(ollama_url):
    assert {m["id"] for m in httpx.get(f"{ollama_url}/v1/models").json()["data"]} == {"smollm2:135m", "tiny:latest"}
    whole = httpx.post(f"{ollama_url}/v1/chat/completions", json={**CHAT, "max_tokens": 3}).json()
    assert whole["choices"][0]["message"]["content"] == "You said: hello"
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    embedded = httpx.post(f"{ollama_url}/v1/embeddings", json={"model": "smollm2:135m", "input": ["a", "b c"]}).json()
    assert len(embedded["data"]) == 2 and embedded["usage"]["prompt_tokens"] == 3
    unknown = httpx.post(f"{ollama_url}/v1/chat/completions", json={**CHAT, "model": "ghost"})
    assert unknown.status_code == 404 and "ghost" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_openai_answer_carries_usage_only_when_asked(ollama_url, include_usage):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": include_usage}}
    with httpx.stream("POST", f"{ollama_url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "You said: hello there"
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage == ([{"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12}] if include_usage else [])


def test_a_tool_call_comes_back_in_openais_shape(ollama_url):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    body = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "weather in Oslo?"}], "tools": tools}
    answer = httpx.post(f"{ollama_url}/v1/chat/completions", json=body).json()["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    (call,) = answer["message"]["tool_calls"]
    assert call["function"]["name"] == "weather" and json.loads(call["function"]["arguments"]) == {"city": "xxxx"}


def test_an_api_key_is_wanted_on_every_route_but_the_devkits():
    with services.model_server("--api-key", "s3cret") as url:
        assert httpx.get(f"{url}/api/tags").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/_devkit/stats").status_code == 200
