"""What agent frameworks use /v1/chat/completions for: tools (offered, forced, streamed, and
their results sent back), structured output, images, sampling options, and the fields that
are honoured or refused, never dropped. Checked against what reaches the model server."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.handlers.conftest import body, header
from tests.support.functions import reset_instance_state

COMPLETIONS = "/v1/chat/completions"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
                   "required": ["city", "days"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}}}}


def ask(api, key: str, content, **fields) -> dict:
    response = api.call("POST", COMPLETIONS, key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": content}], **fields})
    assert response["statusCode"] == 200, body(response)
    return response


def sent_to_the_model(ollama_url: str, path: str = "/api/chat") -> dict:
    """The last request to `path` the model server received, as it received it."""
    return [seen for seen in httpx.get(f"{ollama_url}/_devkit/requests").json() if seen["path"] == path][-1]["body"]


def calls_of(response: dict) -> list[dict]:
    return body(response)["choices"][0]["message"]["tool_calls"]


def test_a_model_that_calls_an_offered_tool_answers_with_openais_tool_calls(api, ollama_url):
    key = api.register()["api_key"]
    response = ask(api, key, "what does get_weather say for Paris?", tools=[WEATHER, CLOCK])
    choice = body(response)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "xxxx", "days": 3}
    assert sent_to_the_model(ollama_url)["tools"][0]["function"]["name"] == "get_weather"
    usage = body(response)["usage"]
    assert usage["completion_tokens"] > 0
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_used"] == usage["total_tokens"]


def test_a_named_tool_choice_is_forced_through_the_answers_format(api, ollama_url):
    key = api.register()["api_key"]
    response = ask(api, key, "hello", tools=[WEATHER, CLOCK],
                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    [call] = calls_of(response)
    assert call["function"]["name"] == "get_time" and json.loads(call["function"]["arguments"]) == {"zone": "UTC"}
    sent = sent_to_the_model(ollama_url)
    assert "tools" not in sent and sent["format"] == CLOCK["function"]["parameters"]


def test_required_forces_a_call_of_one_of_the_tools(api, ollama_url):
    key = api.register()["api_key"]
    [call] = calls_of(ask(api, key, "hello", tools=[WEATHER, CLOCK], tool_choice="required"))
    assert call["function"]["name"] == "get_weather"
    assert [option["properties"]["name"]["const"] for option in sent_to_the_model(ollama_url)["format"]["anyOf"]] == [
        "get_weather", "get_time"]


def test_none_offers_no_tool_and_parallel_calls_can_be_refused(api, ollama_url):
    key = api.register()["api_key"]
    plain = ask(api, key, "get_weather please", tools=[WEATHER], tool_choice="none")
    assert body(plain)["choices"][0]["message"]["content"] == "You said: get_weather please"
    assert "tools" not in sent_to_the_model(ollama_url)
    both = ask(api, key, "get_weather and get_time", tools=[WEATHER, CLOCK])
    assert [call["function"]["name"] for call in calls_of(both)] == ["get_weather", "get_time"]
    one = ask(api, key, "get_weather and get_time", tools=[WEATHER, CLOCK], parallel_tool_calls=False)
    assert [call["function"]["name"] for call in calls_of(one)] == ["get_weather"]


def test_a_tools_result_goes_back_to_the_model_in_its_own_shape(api, ollama_url):
    key = api.register()["api_key"]
    history = [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    response = api.call("POST", COMPLETIONS, key=key, body={"model": "smollm2:135m", "messages": history,
                                                            "tools": [WEATHER]})
    assert response["statusCode"] == 200, body(response)
    sent = sent_to_the_model(ollama_url)["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"}

    orphan = api.call("POST", COMPLETIONS, key=key, body={"model": "smollm2:135m", "messages": [
        {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]})
    assert orphan["statusCode"] == 400 and "call_9" in body(orphan)["error"]["message"]


def test_streamed_tool_calls_arrive_as_delta_fragments(api):
    key = api.register()["api_key"]
    response = ask(api, key, "get_weather for Rome", tools=[WEATHER], stream=True)
    chunks = [json.loads(event.removeprefix("data: ")) for event in response["body"].split("\n\n")
              if event and event != "data: [DONE]"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in chunks[1:])
    fragments = [call for chunk in chunks for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert fragments[0]["id"].startswith("call_") and fragments[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(fragment["function"]["arguments"] for fragment in fragments)) == {"city": "xxxx", "days": 3}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_response_formats_reach_the_model_as_its_format(api, ollama_url):
    key = api.register()["api_key"]
    ask(api, key, "hi", response_format={"type": "json_object"})
    assert sent_to_the_model(ollama_url)["format"] == "json"
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    answer = ask(api, key, "hi", response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    assert sent_to_the_model(ollama_url)["format"] == schema
    assert json.loads(body(answer)["choices"][0]["message"]["content"]) == {"name": "xxxx", "age": 1}


@pytest.mark.parametrize(("fields", "named"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "date"}}}}, "date"),
    ({"response_format": {"type": "json_schema"}}, "json_schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
    ({"tool_choice": "required"}, "required"),
    ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "logprobs"), ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"functions": [WEATHER["function"]]}, "tools instead"), ({"function_call": "auto"}, "tool_choice instead"),
    ({"n": 2}, "n=1"), ({"store": True}, "store"), ({"frobnicate": 1}, "frobnicate"),
])
def test_what_cannot_be_honoured_is_refused_naming_it(api, fields, named):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], **fields})
    assert response["statusCode"] == 400
    error = body(response)["error"]
    assert error["type"] == "invalid_request_error" and named in error["message"], error


def test_fields_that_ask_for_nothing_are_accepted(api):
    key = api.register()["api_key"]
    ask(api, key, "hi", n=1, logprobs=False, store=False, logit_bias={}, modalities=["text"])


def test_sampling_options_text_parts_and_the_user_reach_where_they_belong(api, ollama_url, database):
    from tests.support.accounting import log_lines

    key = api.register()["api_key"]
    ask(api, key, [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}], temperature=0.2, top_p=0.5,
        seed=7, stop=["END"], presence_penalty=0.5, frequency_penalty=-0.5, user="end-user-42",
        metadata={"team": "search"})
    sent = sent_to_the_model(ollama_url)
    assert sent["messages"][0]["content"] == "hello\nworld"
    assert {name: sent["options"][name] for name in ("temperature", "top_p", "seed", "stop", "presence_penalty",
                                                     "frequency_penalty")} == {
        "temperature": 0.2, "top_p": 0.5, "seed": 7, "stop": ["END"], "presence_penalty": 0.5, "frequency_penalty": -0.5}
    assert [line.get("user") for line in log_lines(database)] == ["end-user-42"]


def test_images_come_as_data_urls_only_and_within_a_size(api, ollama_url, monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "6000000")  # the most a deployment allows: an image's limit is within it
    reset_instance_state()
    key = api.register()["api_key"]
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    ask(api, key, [{"type": "text", "text": "what is this?"}, image])
    assert sent_to_the_model(ollama_url)["messages"][0]["images"] == [png]

    for url, named in (("https://example.com/cat.png", "fetches nothing"), ("data:text/plain;base64,aGk=", "data:image"),
                       ("data:image/png;base64," + "A" * (4 * ((4 * 1024 * 1024 + 1024) // 3)), "at most 4194304 bytes")):
        response = api.call("POST", COMPLETIONS, key=key, body={"model": "smollm2:135m", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
        assert response["statusCode"] == 400 and named in body(response)["error"]["message"], url


def test_one_model_is_described_or_is_an_openai_404(api):
    key = api.register()["api_key"]
    found = api.call("GET", "/v1/models/smollm2:135m", key=key)
    assert found["statusCode"] == 200 and body(found)["id"] == "smollm2:135m" and body(found)["object"] == "model"
    assert header(found, "X-RateLimit-Limit")
    missing = api.call("GET", "/v1/models/gpt-9", key=key)
    assert missing["statusCode"] == 404
    assert body(missing)["error"] == {"message": "The model 'gpt-9' does not exist on this gateway.",
                                      "type": "not_found_error", "param": "model", "code": "model_not_found"}


def test_embeddings_are_metered_as_prompt_tokens_in_float_or_base64(api, ollama_url):
    import struct

    key = api.register()["api_key"]
    response = api.call("POST", "/v1/embeddings", key=key, body={"model": "smollm2:135m", "input": ["one two", "three"]})
    assert response["statusCode"] == 200, body(response)
    result = body(response)
    assert result["object"] == "list" and [item["index"] for item in result["data"]] == [0, 1]
    assert all(len(item["embedding"]) == 8 for item in result["data"])
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # the model server's own count
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_used"] == 3
    assert header(response, "X-RateLimit-Limit-Tokens")

    packed = body(api.call("POST", "/v1/embeddings", key=key, body={
        "model": "smollm2:135m", "input": "one two", "encoding_format": "base64", "dimensions": 4}))
    vector = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert sent_to_the_model(ollama_url, "/api/embed")["dimensions"] == 4
    assert abs(sum(value * value for value in vector) - 1) < 1e-4


@pytest.mark.parametrize(("payload", "named"), [
    ({"input": [[1, 2, 3]]}, "token arrays"), ({"input": []}, "input"), ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": "x", "extra": 1}, "extra"),
])
def test_embedding_requests_it_cannot_honour_are_refused_naming_why(api, payload, named):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/embeddings", key=key, body={"model": "smollm2:135m", **payload})
    assert response["statusCode"] == 400 and named in body(response)["error"]["message"]
    assert body(response)["error"]["type"] == "invalid_request_error"



def test_a_model_named_in_a_percent_encoded_path_is_found(api):
    key = api.register()["api_key"]
    found = api.call("GET", "/v1/models/smollm2%3A135m", key=key)
    assert found["statusCode"] == 200 and body(found)["id"] == "smollm2:135m"


def test_fields_it_cannot_honour_sent_as_null_are_no_trouble(api):
    key = api.register()["api_key"]
    ask(api, key, "hi", functions=None, function_call=None, audio=None, prediction=None, web_search_options=None)


def test_param_names_the_field_at_fault_not_the_union_member_tried(api):
    key = api.register()["api_key"]
    response = api.call("POST", COMPLETIONS, key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stop": 5})
    assert response["statusCode"] == 400 and body(response)["error"]["param"] == "stop"
