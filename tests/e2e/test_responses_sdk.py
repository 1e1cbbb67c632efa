"""OpenAI's Responses API through the official `openai` SDK and the OpenAI Agents SDK, both unchanged,
against the gateway over HTTP (`make run`).

The model server is the deterministic one: it answers "You said: " and the last user message; with
tools, it calls each offered tool the last user message names, with the least arguments the tool's
schema admits, and answers once the last message is a tool's output; with a format, it answers the
least JSON the schema admits. So a `Person` (a name, an age) comes back as Person(name="xxxx", age=1).
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

MODEL = "smollm2:135m"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("responses_sdk")


@pytest.fixture
def key(gateway) -> str:
    return gateway.register()["api_key"]


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def usage(gateway, key: str) -> dict:
    response = httpx.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def assert_charged(gateway, key: str, *responses) -> None:
    """The gateway metered one request for each response and charged exactly the tokens they report."""
    standing = usage(gateway, key)
    assert standing["requests"] == len(responses)
    assert standing["tokens_used"] == sum(response.usage.total_tokens for response in responses) > 0
    assert standing["tokens_reserved"] == 0


def test_create_answers_with_output_text_and_is_charged_its_usage(gateway, key):
    response = sdk(gateway, key).responses.create(model=MODEL, input="hello responses", instructions="be brief",
                                                  max_output_tokens=50)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.model == MODEL
    assert response.output_text == "You said: hello responses"
    [message] = response.output
    assert (message.type, message.role, message.status) == ("message", "assistant", "completed")
    assert response.instructions == "be brief" and response.max_output_tokens == 50
    assert response.usage.output_tokens == 4
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert_charged(gateway, key, response)


def test_stream_gives_text_deltas_then_the_final_response(gateway, key):
    with sdk(gateway, key).responses.stream(model=MODEL, input="stream these words please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 6 and "".join(deltas) == "You said: stream these words please"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.status == "completed" and final.output_text == "You said: stream these words please"
    assert final.usage.output_tokens == 6
    assert_charged(gateway, key, final)


def test_a_function_call_and_its_output_lead_to_a_final_answer(gateway, key):
    client = sdk(gateway, key)
    asked = [{"role": "user", "content": "what does get_weather say for Lima?"}]
    first = client.responses.create(model=MODEL, input=asked, tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_") and json.loads(call.arguments) == {"city": "xxxx"}
    assert first.output_text == ""

    answered = [*asked, call.model_dump(exclude_none=True),
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 degrees"}]
    second = client.responses.create(model=MODEL, input=answered, tools=[WEATHER])
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text == "You said: what does get_weather say for Lima?"
    assert_charged(gateway, key, first, second)


def test_parse_with_a_pydantic_model(gateway, key):
    parsed = sdk(gateway, key).responses.parse(model=MODEL, input="Ada Lovelace was 36.", text_format=Person)
    assert parsed.output_parsed == Person(name="xxxx", age=1)
    assert parsed.text.format.type == "json_schema" and parsed.text.format.name == "Person"
    assert_charged(gateway, key, parsed)


def test_previous_response_id_continues_the_kept_conversation(gateway, key):
    client = sdk(gateway, key)
    first = client.responses.create(model=MODEL, input="my name is Ada")
    second = client.responses.create(model=MODEL, input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text == "You said: what is my name?"
    # The model read the whole conversation again: as many prompt tokens as when it is all sent at once.
    whole = client.responses.create(model=MODEL, store=False, input=[
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "You said: my name is Ada"},
        {"role": "user", "content": "what is my name?"}])
    alone = client.responses.create(model=MODEL, store=False, input="what is my name?")
    assert second.usage.input_tokens == whole.usage.input_tokens > alone.usage.input_tokens
    assert_charged(gateway, key, first, second, whole, alone)


def test_retrieve_and_input_items_list_what_was_kept(gateway, key):
    client = sdk(gateway, key)
    created = client.responses.create(model=MODEL, input=[
        {"role": "user", "content": "first words"},
        {"role": "assistant", "content": "You said: first words"},
        {"role": "user", "content": [{"type": "input_text", "text": "second words"}]}], metadata={"case": "kept"})
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert retrieved.metadata == {"case": "kept"}

    items = list(client.responses.input_items.list(created.id))  # newest first, by default
    assert [(item.role, item.content[0].text) for item in items] == [
        ("user", "second words"), ("assistant", "You said: first words"), ("user", "first words")]
    assert len({item.id for item in items}) == 3
    oldest_first = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [item.content[0].text for item in oldest_first.data] == ["first words", "You said: first words"]
    assert oldest_first.has_more is True and oldest_first.last_id == oldest_first.data[-1].id
    rest = client.responses.input_items.list(created.id, order="asc", after=oldest_first.last_id)
    assert [item.content[0].text for item in rest.data] == ["second words"] and rest.has_more is False


def test_delete_forgets_the_response(gateway, key):
    client = sdk(gateway, key)
    created = client.responses.create(model=MODEL, input="forget me")
    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError) as retrieving:
        client.responses.retrieve(created.id)
    assert retrieving.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="go on", previous_response_id=created.id)


def test_another_users_response_is_not_found(gateway, key):
    created = sdk(gateway, key).responses.create(model=MODEL, input="mine alone")
    stranger = sdk(gateway, gateway.register()["api_key"])
    for attempt in (lambda: stranger.responses.retrieve(created.id),
                    lambda: list(stranger.responses.input_items.list(created.id)),
                    lambda: stranger.responses.delete(created.id),
                    lambda: stranger.responses.create(model=MODEL, input="go on", previous_response_id=created.id)):
        with pytest.raises(openai.NotFoundError) as refused:
            attempt()
        assert refused.value.code == "response_not_found"
    assert sdk(gateway, key).responses.retrieve(created.id).output_text == "You said: mine alone"


# --- the OpenAI Agents SDK ------------------------------------------------------------------------

@pytest.fixture
def agents_client(gateway, key):
    """The Agents SDK's default client (its default model speaks the Responses API) pointed at the
    gateway, with every request it sends seen on the wire; the SDK's defaults are restored afterwards."""
    import httpx2
    from agents import set_default_openai_client, set_tracing_disabled
    from agents.models import _openai_shared

    sent: list[dict] = []

    async def seen(request: httpx2.Request) -> None:
        sent.append({"path": request.url.path, **json.loads(request.content or b"{}")})

    before = _openai_shared.get_default_openai_client()
    # Keeps no connection open: the run's event loop is gone by the time the test ends.
    http = httpx2.AsyncClient(timeout=60, event_hooks={"request": [seen]},
                              limits=httpx2.Limits(max_keepalive_connections=0))
    set_tracing_disabled(True)
    set_default_openai_client(openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0,
                                                 http_client=http), use_for_tracing=False)
    yield sent
    _openai_shared.set_default_openai_client(before)


def test_an_agent_calls_its_tool_and_answers(gateway, key, agents_client):
    from agents import Agent, Runner, function_tool

    called: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return "sunny"

    agent = Agent(name="forecaster", instructions="Answer with the weather.", model=MODEL, tools=[get_weather])
    result = Runner.run_sync(agent, "use get_weather for Lima")
    assert called == ["xxxx"]
    assert result.final_output == "You said: use get_weather for Lima"
    assert [[item.type for item in response.output] for response in result.raw_responses] == [
        ["function_call"], ["message"]]
    # The default model spoke the Responses API, and sent the tool's output back in the second turn.
    assert [body["path"] for body in agents_client] == ["/v1/responses", "/v1/responses"]
    assert [body["instructions"] for body in agents_client] == ["Answer with the weather."] * 2
    [output] = [item for item in agents_client[1]["input"] if item.get("type") == "function_call_output"]
    assert output["output"] == "sunny"
    standing = usage(gateway, key)
    assert standing["requests"] == len(result.raw_responses) == 2
    assert standing["tokens_used"] == sum(response.usage.total_tokens for response in result.raw_responses) > 0
    assert standing["tokens_reserved"] == 0
