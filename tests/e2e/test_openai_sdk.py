"""The official `openai` SDK, unchanged, against the gateway over HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("openai")


@pytest.fixture
def key(gateway) -> str:
    return gateway.register()["api_key"]


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_models_list(gateway, key):
    assert {model.id for model in sdk(gateway, key).models.list()} == {"smollm2:135m", "tiny:latest"}


def test_a_completion(gateway, key):
    completion = sdk(gateway, key).chat.completions.create(
        model="smollm2:135m", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello sdk"}],
        max_tokens=20,
    )
    assert completion.choices[0].message.content == "You said: hello sdk"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    usage = httpx.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
    assert usage["tokens_used"] == completion.usage.total_tokens


def test_a_streamed_completion_with_usage(gateway, key):
    stream = sdk(gateway, key).chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "stream this please"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "You said: stream this please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_a_retry_with_the_same_idempotency_key_is_answered_once(gateway, key):
    client = sdk(gateway, key)
    ask = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "only once"}],
           "extra_headers": {"Idempotency-Key": "sdk-retry-1"}}
    first, second = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    assert first.id == second.id
    assert httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key}).json()["requests"] == 1


def test_errors_become_the_sdks_exceptions(gateway, key):
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "igk_" + "0" * 38).models.list()
    with pytest.raises(openai.BadRequestError, match="ghost:1b"):
        sdk(gateway, key).chat.completions.create(model="ghost:1b", messages=[{"role": "user", "content": "hi"}])


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_a_tool_call_and_its_result_round_trip(gateway, key):
    client = sdk(gateway, key)
    asked = [{"role": "user", "content": "what does get_weather say for Lima?"}]
    first = client.chat.completions.create(model="smollm2:135m", messages=asked, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    answered = [*asked, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model="smollm2:135m", messages=answered, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_a_streamed_tool_call_assembles_as_the_sdk_expects(gateway, key):
    stream = sdk(gateway, key).chat.completions.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "get_weather in Quito"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    chunks = list(stream)
    fragments = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert fragments[0].function.name == "get_weather"
    assert "".join(fragment.function.arguments or "" for fragment in fragments) == '{"city": "xxxx"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_parse_with_a_pydantic_model(gateway, key):
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    parsed = sdk(gateway, key).chat.completions.parse(
        model="smollm2:135m", messages=[{"role": "user", "content": "Ada, 36"}], response_format=Person)
    assert parsed.choices[0].message.parsed == Person(name="xxxx", age=1)


def test_models_retrieve(gateway, key):
    client = sdk(gateway, key)
    assert client.models.retrieve("smollm2:135m").id == "smollm2:135m"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_embeddings_in_float_and_base64(gateway, key):
    client = sdk(gateway, key)
    floats = client.embeddings.create(model="smollm2:135m", input=["hello there", "general"], encoding_format="float")
    assert [len(item.embedding) for item in floats.data] == [8, 8] and floats.usage.prompt_tokens == 3
    # Without an encoding_format the SDK asks for base64 and decodes it itself.
    decoded = client.embeddings.create(model="smollm2:135m", input="hello there")
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_a_legacy_completion_filling_in_the_middle(gateway, key):
    client = sdk(gateway, key)
    asked = {"model": "smollm2:135m", "prompt": "def add(a, b):\n    ", "suffix": "\n    return total"}
    completion = client.completions.create(**asked, max_tokens=10)
    assert completion.object == "text_completion" and completion.model == "smollm2:135m"
    [choice] = completion.choices
    assert (choice.text, choice.finish_reason) == ("Filling in before: return total", "stop")
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    cut = client.completions.create(**asked, max_tokens=3)
    assert (cut.choices[0].text, cut.choices[0].finish_reason) == ("Filling in before:", "length")
    charged = completion.usage.total_tokens + cut.usage.total_tokens
    assert httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key}).json()["tokens_used"] == charged


def test_a_streamed_legacy_completion_with_usage(gateway, key):
    stream = sdk(gateway, key).completions.create(
        model="smollm2:135m", prompt="def add(a, b):\n    ", suffix="\n    return total", max_tokens=10, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(choice.text for chunk in chunks for choice in chunk.choices) == "Filling in before: return total"
    assert [choice.finish_reason for chunk in chunks for choice in chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    standing = httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key}).json()
    assert (standing["requests"], standing["tokens_used"]) == (1, chunks[-1].usage.total_tokens)
