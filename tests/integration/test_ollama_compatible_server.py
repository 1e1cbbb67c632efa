"""The development model server keeps to Ollama's documented API."""

from __future__ import annotations

import json

import httpx

CHAT = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hello there"}]}


def test_chat_streams_ndjson_by_default_and_ends_with_the_metering_fields(ollama_url):
    with httpx.stream("POST", f"{ollama_url}/api/chat", json=CHAT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *pieces, final = lines
    assert pieces and all(p["done"] is False and p["message"]["role"] == "assistant" for p in pieces)
    assert final["done"] is True and final["done_reason"] == "stop"
    for field in ("prompt_eval_count", "eval_count", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[field], int)
    assert final["eval_count"] == len(pieces)
    assert "".join(p["message"]["content"] for p in pieces) == "You said: hello there"


def test_chat_without_streaming_is_one_object(ollama_url):
    body = httpx.post(f"{ollama_url}/api/chat", json={**CHAT, "stream": False}).json()
    assert body["done"] is True and body["message"]["content"] == "You said: hello there"
    assert body["prompt_eval_count"] == 2 + 3 + 3 and body["eval_count"] == 4


def test_num_predict_stops_with_done_reason_length(ollama_url):
    body = httpx.post(f"{ollama_url}/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 1}}).json()
    assert (body["eval_count"], body["done_reason"], body["message"]["content"]) == (1, "length", "You")


def test_generate_answers_with_response(ollama_url):
    body = httpx.post(f"{ollama_url}/api/generate", json={"model": "smollm2:135m", "prompt": "hi", "stream": False}).json()
    assert body["response"] == "You said: hi" and body["done"] is True


def test_errors_have_ollamas_bodies_and_statuses(ollama_url):
    missing = httpx.post(f"{ollama_url}/api/chat", json={"messages": []})
    assert (missing.status_code, missing.json()) == (400, {"error": "model is required"})
    unknown = httpx.post(f"{ollama_url}/api/chat", json={**CHAT, "model": "ghost"})
    assert (unknown.status_code, unknown.json()) == (404, {"error": 'model "ghost" not found, try pulling it first'})
    assert httpx.post(f"{ollama_url}/api/chat", content=b"{nope").status_code == 400


def test_tags_and_version(ollama_url):
    models = httpx.get(f"{ollama_url}/api/tags").json()["models"]
    assert {m["name"] for m in models} == {"smollm2:135m", "tiny:latest"}
    assert {"name", "model", "size", "digest", "modified_at", "details"} <= set(models[0])
    assert "version" in httpx.get(f"{ollama_url}/api/version").json()
