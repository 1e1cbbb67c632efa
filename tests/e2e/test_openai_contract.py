"""InferGate's OpenAI-shaped responses, over HTTP through `make run`, held to the schemas of OpenAI's
published OpenAPI description (tests/data/openai/): completions, each chunk of a streamed one,
models, embeddings and error bodies."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.openai_schemas import assert_conforms, violations

MODEL = "smollm2:135m"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("openai_contract")


@pytest.fixture(scope="module")
def http(gateway):
    with gateway.client() as client:
        yield client


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.register()["api_key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def completion(http, key: str, **fields) -> httpx.Response:
    return http.post("/v1/chat/completions", headers=bearer(key), json={"model": MODEL, "max_tokens": 20, **fields})


def server_sent_data(body: str) -> list[str]:
    """The data of each event of a text/event-stream body, in order (an event's `data:` lines
    joined by newlines, as the EventSource standard has it)."""
    events, lines = [], []
    for line in [*body.replace("\r\n", "\n").split("\n"), ""]:
        if line == "":
            if lines:
                events.append("\n".join(lines))
            lines = []
        elif line.startswith("data:"):
            data = line[len("data:"):]
            lines.append(data.removeprefix(" "))
    return events


def streamed_chunks(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = server_sent_data(response.text)
    assert events and events[-1] == "[DONE]", f"the stream does not end in data: [DONE]: {response.text!r}"
    assert "[DONE]" not in events[:-1]
    return [json.loads(data) for data in events[:-1]]


# The validator itself: OpenAPI's nullable and the references between schemas are understood.

def test_a_nullable_field_may_be_null_and_a_referenced_schema_is_enforced():
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [{"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}], "usage": None}
    assert violations("CreateChatCompletionStreamResponse", chunk) == []
    broken = {**chunk, "usage": {"prompt_tokens": 1}}  # CompletionUsage, referenced, needs all three counts
    assert any("'completion_tokens' is a required property (rule CompletionUsage/required)" in found
               for found in violations("CreateChatCompletionStreamResponse", broken))


def test_a_missing_required_field_is_named_with_its_rule():
    assert violations("ErrorResponse", {"error": {"message": "no", "type": "invalid_request_error", "code": None}}) == [
        "$.error: 'param' is a required property (rule Error/required)"]


# Chat completions.

def test_a_completion(http, key):
    response = completion(http, key, messages=[{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": "hello contract"}])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert_conforms("CreateChatCompletionResponse", body, "a completion")


def test_a_completion_with_a_tool_call(http, key):
    response = completion(http, key, messages=[{"role": "user", "content": "get_weather for Paris"}], tools=[WEATHER])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "tool_calls", body
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert_conforms("CreateChatCompletionResponse", body, "a completion with a tool call")


@pytest.mark.parametrize("include_usage", [False, True], ids=["without-usage", "with-usage"])
def test_every_chunk_of_a_streamed_completion(http, key, include_usage):
    chunks = streamed_chunks(completion(http, key, messages=[{"role": "user", "content": "stream this contract"}],
                                        stream=True, stream_options={"include_usage": include_usage}))
    assert "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert ("usage" in chunks[-1] and chunks[-1]["usage"] is not None) is include_usage
    for number, chunk in enumerate(chunks):
        assert_conforms("CreateChatCompletionStreamResponse", chunk, f"chunk {number} of {len(chunks)}")


def test_every_chunk_of_a_streamed_tool_call(http, key):
    chunks = streamed_chunks(completion(http, key, messages=[{"role": "user", "content": "get_weather for Paris"}],
                                        tools=[WEATHER], stream=True, stream_options={"include_usage": True}))
    calls = [call for chunk in chunks for choice in chunk["choices"] for call in choice["delta"].get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"]][-1] == "tool_calls"
    for number, chunk in enumerate(chunks):
        assert_conforms("CreateChatCompletionStreamResponse", chunk, f"chunk {number} of {len(chunks)}")


# Models and embeddings.

def test_the_model_list(http, key):
    response = http.get("/v1/models", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert MODEL in {model["id"] for model in response.json()["data"]}
    assert_conforms("ListModelsResponse", response.json(), "GET /v1/models")


def test_one_model(http, key):
    response = http.get(f"/v1/models/{MODEL}", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == MODEL
    assert_conforms("Model", response.json(), f"GET /v1/models/{MODEL}")


def test_embeddings_as_floats(http, key):
    response = http.post("/v1/embeddings", headers=bearer(key),
                         json={"model": MODEL, "input": ["hello there", "general"], "encoding_format": "float"})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    assert_conforms("CreateEmbeddingResponse", response.json(), "POST /v1/embeddings")


# Errors.

def test_a_400_from_chat_completions(http, key):
    response = completion(http, key, messages=[{"role": "user", "content": "hi"}], n=2)
    assert response.status_code == 400, response.text
    assert_conforms("ErrorResponse", response.json(), "a 400 from POST /v1/chat/completions")


def test_a_400_naming_an_unknown_model(http, key):
    response = completion(http, key, model="ghost:1b", messages=[{"role": "user", "content": "hi"}])
    assert response.status_code == 400, response.text
    assert_conforms("ErrorResponse", response.json(), "a 400 from POST /v1/chat/completions for an unknown model")


def test_a_404_for_an_unknown_model(http, key):
    response = http.get("/v1/models/nope", headers=bearer(key))
    assert response.status_code == 404, response.text
    assert_conforms("ErrorResponse", response.json(), "a 404 from GET /v1/models/nope")


@pytest.mark.parametrize("headers", [bearer("igk_" + "0" * 38), {}], ids=["bad-key", "no-key"])
def test_a_401(http, headers):
    response = http.get("/v1/models", headers=headers)
    assert response.status_code == 401, response.text
    assert_conforms("ErrorResponse", response.json(), "a 401 from GET /v1/models")


def test_a_401_from_chat_completions(http):
    response = completion(http, "igk_" + "0" * 38, messages=[{"role": "user", "content": "hi"}])
    assert response.status_code == 401, response.text
    assert_conforms("ErrorResponse", response.json(), "a 401 from POST /v1/chat/completions")
