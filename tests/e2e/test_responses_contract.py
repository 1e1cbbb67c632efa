"""InferGate's Responses API (POST /v1/responses, GET /v1/responses/{id} and its input_items), over
HTTP through `make run`, held to the schemas of OpenAI's published OpenAPI description
(tests/data/openai/): every answer against `Response`, every streamed event against the schema of
its own type, the input items against `ResponseItemList`, and error bodies against `ErrorResponse`.

The gateway runs on a model server of the module's own, the deterministic one, on which tiny:latest
can think (--thinking-model), so that reasoning output is held to the schema too; smollm2:135m cannot.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import services
from tests.support.openai_schemas import assert_conforms, stream_event_schema

MODEL, THINKER = "smollm2:135m", "tiny:latest"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PERSON = {"type": "json_schema", "name": "person", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def model_url():
    with services.model_server("--thinking-model", THINKER) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(model_url, gateway_of):  # the model server outlives the gateway
    return gateway_of("responses_contract", model_url=model_url)


@pytest.fixture(scope="module")
def http(gateway):
    with gateway.client() as client:
        yield client


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.register()["api_key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def respond(http, key: str, **fields) -> httpx.Response:
    return http.post("/v1/responses", headers=bearer(key), json={"model": MODEL, **fields})


def answered(http, key: str, what: str, **fields) -> dict:
    """The response to `fields`, after holding it to OpenAI's `Response`."""
    response = respond(http, key, **fields)
    assert response.status_code == 200, response.text
    assert_conforms("Response", response.json(), what)
    return response.json()


def server_sent_events(body: str) -> list[tuple[str | None, str]]:
    """Each event of a text/event-stream body, in order: its `event:` name and its data (the event's
    `data:` lines joined by newlines, as the EventSource standard has it)."""
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


def streamed(http, key: str, what: str, **fields) -> list[dict]:
    """The events of the response to `fields` streamed, after holding each to its own schema: named by
    its `event:` line as its `type` is, numbered in order from 0."""
    response = respond(http, key, stream=True, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for number, (name, data) in enumerate(server_sent_events(response.text)):
        event = json.loads(data)
        schema = stream_event_schema(event)
        assert schema != "ResponseStreamEvent", f"event {number} of {what} is of no type OpenAI streams: {event}"
        assert (name, event["sequence_number"]) == (event["type"], number), event
        assert_conforms(schema, event, f"event {number} ({event['type']}) of {what}")
        events.append(event)
    assert events, f"{what} streamed nothing"
    return events


def kinds(events: list[dict]) -> list[str]:
    return [event["type"] for event in events]


# Whole answers.

def test_a_text_answer(http, key):
    body = answered(http, key, "a text answer", input="hello contract", instructions="be brief",
                    metadata={"case": "text"}, temperature=0.2, top_p=0.9, max_output_tokens=50)
    assert body["status"] == "completed" and body["output"][0]["content"][0]["text"] == "You said: hello contract"
    assert (body["instructions"], body["metadata"], body["max_output_tokens"]) == ("be brief", {"case": "text"}, 50)


def test_an_answer_to_items(http, key):
    body = answered(http, key, "an answer to items", input=[
        {"type": "message", "role": "developer", "content": "answer plainly"},
        {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "You said: first", "annotations": []}]},
        {"role": "user", "content": "second"}])
    assert body["output"][0]["content"][0]["text"] == "You said: second"


def test_a_function_call(http, key):
    body = answered(http, key, "a function call", input="what does get_weather say for Lima?", tools=[WEATHER],
                    parallel_tool_calls=False)
    [call] = body["output"]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == ("function_call", "get_weather",
                                                                           {"city": "xxxx"})
    assert body["tools"][0]["name"] == "get_weather" and body["parallel_tool_calls"] is False


def test_a_forced_function_call_in_a_namespace(http, key):
    tools = [{"type": "namespace", "name": "weather", "description": "Weather tools", "tools": [WEATHER]},
             {"type": "web_search"}]
    response = respond(http, key, input="how warm is it?", tools=tools,
                       tool_choice={"type": "function", "name": "get_weather"})
    assert response.status_code == 200, response.text
    assert response.headers["InferGate-Ignored"] == "tools.web_search"
    body = response.json()
    assert_conforms("Response", body, "a forced function call in a namespace")
    assert [item["name"] for item in body["output"]] == ["get_weather"]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_a_function_calls_output_answered(http, key):
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Lima"}'}
    body = answered(http, key, "an answer to a function call's output", tools=[WEATHER], input=[
        {"role": "user", "content": "what does get_weather say for Lima?"}, call,
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}])
    assert [item["type"] for item in body["output"]] == ["message"]


@pytest.mark.parametrize("text_format", [PERSON, {"type": "json_object"}], ids=["json_schema", "json_object"])
def test_a_formatted_answer(http, key, text_format):
    body = answered(http, key, f"a {text_format['type']} answer", input="Ada Lovelace was 36. Answer in JSON.",
                    text={"format": text_format})
    answer = json.loads(body["output"][0]["content"][0]["text"])
    assert answer == ({"name": "xxxx", "age": 1} if text_format is PERSON else {})
    assert body["text"]["format"]["type"] == text_format["type"]


def test_an_answer_cut_by_max_output_tokens_is_incomplete(http, key):
    body = answered(http, key, "an incomplete answer", input="one two three four five six", max_output_tokens=3)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete" and body["usage"]["output_tokens"] == 3


def test_an_answer_with_reasoning(http, key):
    body = answered(http, key, "an answer with reasoning", model=THINKER, input="think it over",
                    reasoning={"effort": "high", "summary": "auto"}, include=["reasoning.encrypted_content"])
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][0]["content"][0]["text"] == "Thinking about: think it over"
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 5


def test_a_continued_and_a_kept_response(http, key):
    first = answered(http, key, "a first response", input="remember this")
    second = answered(http, key, "a continued response", input="and this", previous_response_id=first["id"])
    assert second["previous_response_id"] == first["id"]
    kept = http.get(f"/v1/responses/{second['id']}", headers=bearer(key))
    assert kept.status_code == 200, kept.text
    assert kept.json() == second
    assert_conforms("Response", kept.json(), "GET /v1/responses/{id}")


# Streamed answers.

def test_every_event_of_a_streamed_text_answer(http, key):
    events = streamed(http, key, "a streamed text answer", input="stream this contract", instructions="be brief")
    assert kinds(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 5, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "You said: stream this contract"


def test_every_event_of_a_streamed_function_call(http, key):
    events = streamed(http, key, "a streamed function call", input="get_weather for Paris", tools=[WEATHER])
    assert kinds(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert events[-1]["response"]["output"][0]["name"] == "get_weather"


def test_every_event_of_a_streamed_formatted_answer(http, key):
    events = streamed(http, key, "a streamed json_schema answer", input="Ada Lovelace was 36.",
                      text={"format": PERSON})
    done = next(event for event in events if event["type"] == "response.output_text.done")
    assert json.loads(done["text"]) == {"name": "xxxx", "age": 1}


def test_every_event_of_a_streamed_answer_cut_by_max_output_tokens(http, key):
    events = streamed(http, key, "a streamed incomplete answer", input="one two three four five six",
                      max_output_tokens=3)
    assert kinds(events)[-1] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_every_event_of_a_streamed_answer_with_reasoning(http, key):
    events = streamed(http, key, "a streamed answer with reasoning", model=THINKER, input="think it over",
                      reasoning={"effort": "medium"})
    assert kinds(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        *["response.reasoning_text.delta"] * 5, "response.reasoning_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", *["response.output_text.delta"] * 5,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["reasoning", "message"]


def test_every_event_of_a_streamed_answer_that_fails(http, key, model_url):
    httpx.post(f"{model_url}/_devkit/faults", json={"mode": "break", "after_pieces": 2, "count": 1}).raise_for_status()
    events = streamed(http, key, "a streamed answer that fails", input="this will break off")
    assert kinds(events)[-1] == "response.failed"
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]


# Input items.

def test_the_input_items(http, key):
    call = {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city": "Lima"}'}
    body = answered(http, key, "an answer to a conversation", tools=[WEATHER], input=[
        {"role": "user", "content": "what does get_weather say for Lima?"},
        {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": None}, call,
        {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
        {"role": "assistant", "content": "sunny it is"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "and warm"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "and tomorrow?"}]}])
    pages = {}
    for query in ({}, {"order": "asc", "limit": 2}):
        listed = http.get(f"/v1/responses/{body['id']}/input_items", headers=bearer(key), params=query)
        assert listed.status_code == 200, listed.text
        assert_conforms("ResponseItemList", listed.json(), f"GET /v1/responses/{{id}}/input_items?{query}")
        pages[json.dumps(query)] = [item["type"] for item in listed.json()["data"]]
    assert pages == {"{}": ["message", "message", "message", "function_call_output", "function_call", "reasoning",
                            "message"],
                     '{"order": "asc", "limit": 2}': ["message", "reasoning"]}


# Errors.

@pytest.mark.parametrize("fields", [
    {"input": "hi", "n": 2},
    {"input": []},
    {"input": "hi", "model": "ghost:1b"},
    {"input": "hi", "conversation": "conv_1"},
    {"input": [{"type": "function_call_output", "call_id": "nowhere", "output": "x"}]},
], ids=["unknown-field", "empty-input", "unknown-model", "conversation", "unanswered-output"])
def test_a_400(http, key, fields):
    response = respond(http, key, **fields)
    assert response.status_code == 400, response.text
    assert_conforms("ErrorResponse", response.json(), f"a 400 from POST /v1/responses with {fields}")


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/responses/resp_nothing"), ("GET", "/v1/responses/resp_nothing/input_items"),
    ("DELETE", "/v1/responses/resp_nothing")])
def test_a_404(http, key, method, path):
    response = http.request(method, path, headers=bearer(key))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "response_not_found"
    assert_conforms("ErrorResponse", response.json(), f"a 404 from {method} {path}")


def test_a_404_for_a_previous_response_id_not_kept(http, key):
    response = respond(http, key, input="go on", previous_response_id="resp_nothing")
    assert response.status_code == 404, response.text
    assert_conforms("ErrorResponse", response.json(), "a 404 from POST /v1/responses")


def test_a_401(http):
    response = respond(http, "igk_" + "0" * 38, input="hi")
    assert response.status_code == 401, response.text
    assert_conforms("ErrorResponse", response.json(), "a 401 from POST /v1/responses")
