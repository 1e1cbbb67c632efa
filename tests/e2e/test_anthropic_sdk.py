"""The official `anthropic` SDK, unchanged, and langchain-anthropic's ChatAnthropic, against the gateway's
Messages API (POST /v1/messages, /v1/messages/count_tokens) over HTTP, as their users point them at it:
`base_url` the gateway's root, `api_key` a registered user's key.

Anthropic's model names are the gateway's aliases (MODEL_ALIASES): `claude-sonnet-5-5` is served by
smollm2:135m and `claude-haiku-5-5` by tiny:latest, and each answer names the model that served it. The
model server is the module's own deterministic one ("You said: " and the last user message; a call of each
offered tool the last user message names), so that a test can hold a chat in flight on it (its faults).
A user may have one chat in flight (MAX_CONCURRENT_REQUESTS=1): a second is refused 429 with
`Retry-After: 1`, which the SDK's retries honour.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import anthropic
import httpx
import httpx2
import pytest

from tests.support import services
from tests.support.anthropic_schemas import assert_error
from tests.support.waiting import wait_for

SONNET, HAIKU = "claude-sonnet-5-5", "claude-haiku-5-5"
ALIASES = {SONNET: ["smollm2:135m"], HAIKU: ["tiny:latest"]}
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def model_url():
    with services.model_server() as url:
        yield url


@pytest.fixture(scope="module")
def gateway(gateway_of, model_url):
    return gateway_of("anthropic", model_url=model_url, MODEL_ALIASES=json.dumps(ALIASES),
                      MAX_CONCURRENT_REQUESTS="1")


@pytest.fixture
def key(gateway) -> str:
    return gateway.register()["api_key"]


def sdk(gateway, key: str, **options) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, **{"max_retries": 0, **options})


def usage(gateway, key: str) -> dict:
    response = httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    return response.json()


def charged(message: anthropic.types.Message) -> int:
    return message.usage.input_tokens + message.usage.output_tokens


# --- messages.create and messages.stream ----------------------------------------------------------

def test_a_message(gateway, key):
    message = sdk(gateway, key).messages.create(
        model=SONNET, max_tokens=50, system="Be brief.", messages=[{"role": "user", "content": "hello sdk"}])
    assert isinstance(message, anthropic.types.Message)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "You said: hello sdk"
    assert (message.role, message.stop_reason, message.model) == ("assistant", "end_turn", "smollm2:135m")
    assert message.id.startswith("msg_") and message.usage.output_tokens == 4
    standing = usage(gateway, key)
    assert (standing["requests"], standing["tokens_used"]) == (1, charged(message))


def test_each_alias_is_answered_by_the_model_that_served_it(gateway, key):
    client = sdk(gateway, key)
    asked = {"max_tokens": 20, "messages": [{"role": "user", "content": "who serves this?"}]}
    sonnet, haiku = client.messages.create(model=SONNET, **asked), client.messages.create(model=HAIKU, **asked)
    assert (sonnet.model, haiku.model) == ("smollm2:135m", "tiny:latest")
    by_model = usage(gateway, key)["by_model"]
    assert by_model == {"smollm2:135m": {"tokens": charged(sonnet), "requests": 1, "cost_micros": 0},
                        "tiny:latest": {"tokens": charged(haiku), "requests": 1, "cost_micros": 0}}  # unpriced
    # A name no alias maps is no model of the gateway's.
    with pytest.raises(anthropic.BadRequestError, match="claude-opus-4-1") as refused:
        client.messages.create(model="claude-opus-4-1", **asked)
    assert refused.value.body["error"]["type"] == "invalid_request_error"


def test_a_streamed_message_is_charged_what_its_usage_says(gateway, key):
    with sdk(gateway, key).messages.stream(model=SONNET, max_tokens=50,
                                           messages=[{"role": "user", "content": "stream this one please"}]) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert deltas == ["You", " said:", " stream", " this", " one", " please"]
    assert final.content[0].text == "".join(deltas) and final.stop_reason == "end_turn"
    assert final.model == "smollm2:135m" and final.usage.output_tokens == len(deltas)
    assert final.usage.input_tokens > 0
    standing = usage(gateway, key)
    assert (standing["requests"], standing["tokens_used"], standing["tokens_reserved"]) == (1, charged(final), 0)


def test_hints_it_cannot_apply_are_answered_and_named(gateway, key):
    """What the SDK sends for prompt caching, effort and speed changes no answer of a self-hosted model:
    the answer comes, and InferGate-Ignored names each hint."""
    raw = sdk(gateway, key).messages.with_raw_response.create(
        model=SONNET, max_tokens=20, messages=[{"role": "user", "content": "a hinted question"}],
        cache_control={"type": "ephemeral"}, speed="fast", output_config={"effort": "xhigh"})
    assert raw.parse().content[0].text == "You said: a hinted question"
    assert raw.headers["InferGate-Ignored"].split(", ") == ["output_config.effort", "cache_control", "speed"]


# --- tools ------------------------------------------------------------------------------------------

def test_a_tool_use_and_its_result_come_to_an_answer(gateway, key):
    client = sdk(gateway, key)
    asked = [{"role": "user", "content": "what does get_weather say for Lima?"}]
    first = client.messages.create(model=SONNET, max_tokens=100, tools=[WEATHER], messages=asked)
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "xxxx"}) and call.id
    answered = [*asked, {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24"}]}]
    second = client.messages.create(model=SONNET, max_tokens=100, tools=[WEATHER], messages=answered)
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "You said: what does get_weather say for Lima?"
    assert usage(gateway, key)["tokens_used"] == charged(first) + charged(second)


def test_a_streamed_tool_use_assembles_as_the_sdk_expects(gateway, key):
    with sdk(gateway, key).messages.stream(model=SONNET, max_tokens=100, tools=[WEATHER],
                                           messages=[{"role": "user", "content": "get_weather in Quito"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [call] = final.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "xxxx"})


# --- count_tokens -----------------------------------------------------------------------------------

def test_count_tokens_is_the_prompts_bound_and_is_not_metered(gateway, key):
    client = sdk(gateway, key)
    asked = {"model": SONNET, "system": "be brief", "messages": [{"role": "user", "content": "hello count"}]}
    counted = client.messages.count_tokens(**asked)
    # The gateway's bound (docs/api/plans-and-limits.md): UTF-8 bytes, 8 a message (the system prompt is one), 64 a request.
    assert counted.input_tokens == 64 + (len("be brief") + 8) + (len("hello count") + 8)
    assert client.messages.count_tokens(**asked, tools=[WEATHER]).input_tokens > counted.input_tokens
    # It is the bound a message is admitted against: never less than what the model counts.
    message = client.messages.create(max_tokens=20, **asked)
    assert message.usage.input_tokens <= counted.input_tokens
    standing = usage(gateway, key)
    assert (standing["requests"], standing["tokens_used"]) == (1, charged(message))


# --- errors the SDK's retries rely on ---------------------------------------------------------------

def test_a_bad_key_is_an_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        sdk(gateway, "igk_" + "0" * 38).messages.create(model=SONNET, max_tokens=10,
                                                         messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("asked", "field"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_time"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}]},
     "messages.0"),
], ids=["max_tokens", "tool_choice", "tool_result"])
def test_a_refused_field_is_a_bad_request_naming_it(gateway, key, asked, field):
    request = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **asked}
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk(gateway, key).messages.create(**request)
    assert refused.value.status_code == 400
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert refused.value.body["error"]["message"].startswith(field), refused.value.body
    assert usage(gateway, key)["requests"] == 0


class Wire:
    """The SDK's attempts as they leave and come back: when, with what status and Retry-After."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.answered: list[tuple[float, int, str | None]] = []

    def client(self) -> httpx2.Client:
        return httpx2.Client(timeout=60, event_hooks={
            "request": [lambda request: self.sent.append(
                (time.monotonic(), request.headers.get("x-stainless-retry-count", "")))],
            "response": [lambda response: self.answered.append(
                (time.monotonic(), response.status_code, response.headers.get("retry-after")))]})


def test_a_429_is_a_rate_limit_error_whose_retry_after_the_sdk_honours(gateway, key, model_url):
    """With a chat of the user's held in flight (the model server stalls after its first word), another
    is refused 429 `too_many_concurrent_requests` with `Retry-After: 1`: a RateLimitError without retries;
    with them, the SDK waits what Retry-After says (not its own 0.5 s backoff) and its retry is answered
    once the held chat has ended."""
    httpx.post(f"{model_url}/_devkit/faults", json={"mode": "stall", "count": 1, "after_pieces": 1, "seconds": 3})
    held_id, held = f"held-{uuid.uuid4().hex[:12]}", {}

    def hold() -> None:
        held["response"] = httpx.post(f"{gateway.url}/v1/messages", timeout=60, headers={
            "x-api-key": key, "x-request-id": held_id}, json={
            "model": SONNET, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hold on"}]})

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        wait_for(lambda: gateway.model_asked(held_id), what="the held chat reaching the model server")
        asked = {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": "after the wait"}]}
        with pytest.raises(anthropic.RateLimitError) as refused:
            sdk(gateway, key).messages.create(**asked)
        assert refused.value.status_code == 429 and refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["error"]["type"] == "rate_limit_error"
        assert_error(refused.value.body, "a 429 from POST /v1/messages")

        wire = Wire()
        message = sdk(gateway, key, max_retries=8, http_client=wire.client()).messages.create(**asked)
    finally:
        holder.join(timeout=60)
    assert message.content[0].text == "You said: after the wait"
    assert held["response"].status_code == 200 and "You said: hold on" in "".join(
        json.loads(line[5:]).get("delta", {}).get("text", "") for line in held["response"].text.splitlines()
        if line.startswith("data:"))
    statuses = [status for _, status, _ in wire.answered]
    assert statuses[0] == 429 and statuses[-1] == 200 and set(statuses[:-1]) == {429}, statuses
    assert [count for _, count in wire.sent] == [str(attempt) for attempt in range(len(statuses))]
    for (refused_at, _, retry_after), (retried_at, _) in zip(wire.answered, wire.sent[1:], strict=False):
        assert retry_after == "1" and retried_at - refused_at >= 1.0, (wire.answered, wire.sent)
    # Only what was answered is charged: the held chat and the retried one.
    assert usage(gateway, key)["requests"] == 2


# --- langchain-anthropic ----------------------------------------------------------------------------

def test_chat_anthropic_with_a_tool_bound_makes_a_tool_call(gateway, key):
    from langchain_anthropic import ChatAnthropic
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str, days: int) -> str:
        """The weather forecast for a city."""
        return "sunny"

    model = ChatAnthropic(model=SONNET, base_url=gateway.url, api_key=key, max_retries=0, timeout=60, max_tokens=200)
    answer = model.bind_tools([get_weather]).invoke("what does get_weather say for Lima?")
    [call] = answer.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "xxxx", "days": 1}) and call["id"]
    assert answer.response_metadata["stop_reason"] == "tool_use"
    assert answer.response_metadata["model_name"] == "smollm2:135m"
    standing = usage(gateway, key)
    assert (standing["requests"], standing["tokens_used"]) == (1, answer.usage_metadata["total_tokens"])
