"""The agent APIs' answers over HTTP through `make run`, each held to its vendor's published shape:

- Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens): every answer, every streamed
  event and every error body against the `anthropic` SDK's types, strictly (tests/support/anthropic_schemas.py):
  text, tool use, thinking (a model of the module's own model server that thinks), thinking omitted, an
  answer cut short, an error before the answer and one mid-stream.
- OpenAI's legacy completions (POST /v1/completions): answers, chunks and error bodies against OpenAI's
  published `CreateCompletionResponse` and `ErrorResponse` (tests/support/openai_schemas.py).
"""

from __future__ import annotations

import json

import httpx
import pytest
from anthropic.types import ErrorResponse

from tests.support import anthropic_schemas, services
from tests.support.anthropic_schemas import assert_count, assert_error, assert_event, assert_message
from tests.support.openai_schemas import assert_conforms, violations

MODEL, THINKER = "smollm2:135m", "tiny:latest"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def model_url():
    """The module's own deterministic model server, on which tiny:latest thinks when asked and faults
    may be armed."""
    with services.model_server("--thinking-model", THINKER) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(gateway_of, model_url):
    return gateway_of("agent_contract", model_url=model_url)


@pytest.fixture(scope="module")
def http(gateway):
    with gateway.client() as client:
        yield client


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.register()["api_key"]


@pytest.fixture
def fault(model_url):
    def arm(**details) -> None:
        httpx.post(f"{model_url}/_devkit/faults", json={"count": 1, **details}).raise_for_status()

    yield arm
    httpx.post(f"{model_url}/_devkit/faults", json={"count": 0})


def server_sent_events(body: str) -> list[tuple[str | None, str]]:
    """Each event of a text/event-stream body, in order: its `event:` name (None without one) and its data
    (the event's `data:` lines joined by newlines, as the EventSource standard has it)."""
    events, name, lines = [], None, []
    for line in [*body.replace("\r\n", "\n").split("\n"), ""]:
        if line == "":
            if lines:
                events.append((name, "\n".join(lines)))
            name, lines = None, []
        elif line.startswith("event:"):
            name = line[len("event:"):].strip()
        elif line.startswith("data:"):
            lines.append(line[len("data:"):].removeprefix(" "))
    return events


# --- Anthropic's Messages API -----------------------------------------------------------------------

def messages(http, key: str, **fields) -> httpx.Response:
    body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hello contract"}], **fields}
    return http.post("/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, json=body)


def message(http, key: str, **fields) -> dict:
    response = messages(http, key, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_message(response.json(), f"the answer to {fields or 'a plain request'}")
    return response.json()


def events(http, key: str, **fields) -> list[dict]:
    """The streamed answer's events, each held to its SDK type (and its SSE name to its `type`)."""
    response = messages(http, key, stream=True, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    found = []
    for number, (name, data) in enumerate(server_sent_events(response.text)):
        event = json.loads(data)
        assert_event(event, name, f"event {number} ({name})")
        found.append(event)
    return found


def shape(found: list[dict]) -> list[str]:
    """The events by type, each delta by its own type: a stream's outline."""
    return [event["delta"]["type"] if event["type"] == "content_block_delta" else event["type"] for event in found]


def test_a_message(http, key):
    body = message(http, key, system="be brief")
    assert body["content"] == [{"type": "text", "text": "You said: hello contract"}]
    assert body["stop_reason"] == "end_turn"


def test_a_message_cut_short(http, key):
    body = message(http, key, max_tokens=2)
    assert body["content"][0]["text"] == "You said:" and body["stop_reason"] == "max_tokens"


def test_a_message_with_a_tool_use(http, key):
    body = message(http, key, tools=[WEATHER], messages=[{"role": "user", "content": "get_weather for Paris"}])
    assert body["stop_reason"] == "tool_use"
    [call] = body["content"]
    assert (call["type"], call["name"], call["input"]) == ("tool_use", "get_weather", {"city": "xxxx"})


def test_a_message_answering_a_tool_result(http, key):
    asked = {"role": "user", "content": "get_weather for Paris"}
    called = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                "input": {"city": "Paris"}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
    body = message(http, key, tools=[WEATHER], messages=[asked, called, result])
    assert body["stop_reason"] == "end_turn" and body["content"][0]["type"] == "text"


def test_a_message_with_thinking(http, key):
    body = message(http, key, model=THINKER, thinking={"type": "enabled", "budget_tokens": 1024},
                   messages=[{"role": "user", "content": "think it over"}])
    assert [block["type"] for block in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["thinking"] == "Thinking about: think it over"
    assert body["content"][1]["text"] == "You said: think it over"


def test_a_message_with_thinking_omitted(http, key):
    body = message(http, key, model=THINKER, thinking={"type": "adaptive", "display": "omitted"})
    assert [block["type"] for block in body["content"]] == ["text"]


def test_the_events_of_a_streamed_message(http, key):
    found = events(http, key)
    assert shape(found) == ["message_start", "ping", "content_block_start", *["text_delta"] * 4,
                            "content_block_stop", "message_delta", "message_stop"]
    assert "".join(event["delta"]["text"] for event in found if shape([event]) == ["text_delta"]) == (
        "You said: hello contract")
    assert found[-2]["delta"]["stop_reason"] == "end_turn" and found[-2]["usage"]["output_tokens"] == 4


def test_the_events_of_a_streamed_tool_use(http, key):
    found = events(http, key, tools=[WEATHER], messages=[{"role": "user", "content": "get_weather for Paris"}])
    assert shape(found) == ["message_start", "ping", "content_block_start", "input_json_delta", "content_block_stop",
                            "message_delta", "message_stop"]
    assert found[2]["content_block"]["name"] == "get_weather"
    assert json.loads(found[3]["delta"]["partial_json"]) == {"city": "xxxx"}
    assert found[-2]["delta"]["stop_reason"] == "tool_use"


def test_the_events_of_a_streamed_message_with_thinking(http, key):
    found = events(http, key, model=THINKER, thinking={"type": "adaptive"},
                   messages=[{"role": "user", "content": "think it over"}])
    assert shape(found) == ["message_start", "ping",
                            "content_block_start", *["thinking_delta"] * 5, "signature_delta", "content_block_stop",
                            "content_block_start", *["text_delta"] * 5, "content_block_stop",
                            "message_delta", "message_stop"]
    assert [event["index"] for event in found if event["type"] == "content_block_start"] == [0, 1]


def test_the_events_of_a_streamed_message_with_thinking_omitted(http, key):
    found = events(http, key, model=THINKER, thinking={"type": "adaptive", "display": "omitted"})
    assert "thinking_delta" not in shape(found) and "text_delta" in shape(found)


def test_the_events_of_a_stream_cut_by_a_failure_end_in_an_error_event(http, key, fault):
    fault(mode="break", after_pieces=2)
    found = events(http, key)
    assert shape(found)[:2] == ["message_start", "ping"] and found[-1]["type"] == "error"
    assert found[-1]["error"]["type"] == "api_error" and "message_stop" not in shape(found)


def test_a_token_count(http, key):
    response = http.post("/v1/messages/count_tokens", headers={"x-api-key": key}, json={
        "model": MODEL, "system": "be brief", "tools": [WEATHER], "messages": [{"role": "user", "content": "count me"}]})
    assert response.status_code == 200, response.text
    assert_count(response.json(), "POST /v1/messages/count_tokens")


@pytest.mark.parametrize("fields", [{"max_tokens": 0}, {"model": "ghost:1b"}, {"messages": []}],
                         ids=["max_tokens", "unknown-model", "no-messages"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_400(http, key, fields, stream):
    response = messages(http, key, stream=stream, **fields)
    assert response.status_code == 400, response.text
    assert_error(response.json(), "a 400 from POST /v1/messages")
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_model_server_failure_before_the_answer(http, key, fault):
    """The model server fails before answering: a 502 in Anthropic's shape, streamed or not."""
    fault(mode="status", status=500, count=2)
    for stream in (False, True):
        response = messages(http, key, stream=stream)
        assert response.status_code == 502, response.text
        assert_error(response.json(), f"a 502 from POST /v1/messages ({stream=})")
        assert response.json()["error"]["type"] == "api_error"


# API Gateway refuses a key before any route's function runs, in one body for every API (template.yaml's
# GatewayResponses): Anthropic's shape and OpenAI's at once, so its error carries OpenAI's `param` and `code`
# besides Anthropic's `type` and `message`. That is the one difference from the SDK's type held here.
GATEWAYS_OWN = ["$.error.param: not a field of the SDK's AuthenticationErrorObject (it has message, type)",
                "$.error.code: not a field of the SDK's AuthenticationErrorObject (it has message, type)"]


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_401_is_anthropics_error_with_openais_fields_besides(http, route):
    response = http.post(route, headers={"x-api-key": "igk_" + "0" * 38},
                         json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401, response.text
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "authentication_error"
    assert anthropic_schemas.violations(ErrorResponse, response.json()) == GATEWAYS_OWN


# --- OpenAI's legacy completions --------------------------------------------------------------------

def completions(http, key: str, **fields) -> httpx.Response:
    body = {"model": MODEL, "prompt": "def add(a, b):", "max_tokens": 20, **fields}
    return http.post("/v1/completions", headers={"Authorization": f"Bearer {key}"}, json=body)


def chunks(http, key: str, **fields) -> list[dict]:
    response = completions(http, key, stream=True, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [data for _, data in server_sent_events(response.text)]
    assert data and data[-1] == "[DONE]" and "[DONE]" not in data[:-1], response.text
    return [json.loads(item) for item in data[:-1]]


def assert_chunk_conforms(chunk: dict, what: str, *, last: bool) -> None:
    """A chunk of a streamed completion against CreateCompletionResponse, which OpenAI says the chunks share.

    The one difference: the schema wants every choice's `finish_reason` a string, while OpenAI's own streams
    send `finish_reason: null` in every chunk before the one that ends the choice. That null, and nothing else,
    is allowed here, and only before the last chunk that carries a choice."""
    found = violations("CreateCompletionResponse", chunk)
    if not last:  # a null finish_reason breaks the schema's type and its enum, at that path and nowhere else
        nulls = {f"$.choices[{index}].finish_reason" for index, choice in enumerate(chunk["choices"])
                 if "finish_reason" in choice and choice["finish_reason"] is None}
        found = [line for line in found if line.split(": ", 1)[0] not in nulls]
    assert not found, f"{what} does not conform to OpenAI's CreateCompletionResponse:\n  " + "\n  ".join(found) + (
        f"\nchunk: {json.dumps(chunk)}")


def test_the_chunk_check_allows_a_null_finish_reason_before_the_last_chunk_only():
    chunk = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL,
             "choices": [{"text": "x", "index": 0, "logprobs": None, "finish_reason": None}]}
    assert_chunk_conforms(chunk, "a chunk", last=False)
    with pytest.raises(AssertionError, match="finish_reason"):
        assert_chunk_conforms(chunk, "the last chunk", last=True)
    with pytest.raises(AssertionError, match="text"):
        assert_chunk_conforms({**chunk, "choices": [{**chunk["choices"][0], "text": None}]}, "a chunk", last=False)


def test_a_completion(http, key):
    response = completions(http, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["text"] == "You said: def add(a, b):" and body["choices"][0]["finish_reason"] == "stop"
    assert_conforms("CreateCompletionResponse", body, "a completion")


def test_a_completion_filling_in_the_middle_cut_short(http, key):
    response = completions(http, key, suffix="return result", max_tokens=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0] == {"text": "Filling in before:", "index": 0, "logprobs": None, "finish_reason": "length"}
    assert_conforms("CreateCompletionResponse", body, "a completion filling in the middle")


@pytest.mark.parametrize("include_usage", [False, True], ids=["without-usage", "with-usage"])
def test_every_chunk_of_a_streamed_completion(http, key, include_usage):
    found = chunks(http, key, suffix="return result", stream_options={"include_usage": include_usage})
    assert "".join(choice["text"] for chunk in found for choice in chunk["choices"]) == (
        "Filling in before: return result")
    with_choices = [number for number, chunk in enumerate(found) if chunk["choices"]]
    assert [chunk["choices"][0]["finish_reason"] for chunk in found if chunk["choices"]][-1] == "stop"
    assert (found[-1].get("usage") is not None) is include_usage
    for number, chunk in enumerate(found):
        assert_chunk_conforms(chunk, f"chunk {number} of {len(found)}", last=number == with_choices[-1])


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("best_of", 2), ("n", 2), ("logprobs", 1)])
def test_a_400_naming_a_field_it_cannot_honour(http, key, field, value):
    response = completions(http, key, **{field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
    assert_conforms("ErrorResponse", response.json(), f"a 400 from POST /v1/completions for {field}")


def test_a_401_from_completions(http):
    response = completions(http, "igk_" + "0" * 38)
    assert response.status_code == 401, response.text
    assert_conforms("ErrorResponse", response.json(), "a 401 from POST /v1/completions")
