"""Agent frameworks, unchanged, against the gateway over HTTP: langchain-openai and pydantic-ai,
each pointed at the gateway's /v1 with a registered user's key, as their users configure them.

The model server is the deterministic one: it calls each offered tool that the last user message
names, with the least arguments the tool's schema admits; with a format (a forced call, or a
response_format's schema) it answers the least JSON the schema admits; otherwise it answers
"You said: " and the last user message. So a `Person` (a name, an age) comes back as
Person(name="xxxx", age=1).

Every request the framework sends is seen on the wire (an event hook on its HTTP client), so each test knows how
many chat completions the framework asked for, and checks that the gateway metered exactly those.

instructor is not among them: no release of it installs beside openai 3.57 (every one wants
jiter<0.15, openai 3.57 wants jiter>=0.16, and those before 1.17 want openai<3).
"""

from __future__ import annotations

import json

import httpx
import httpx2
import pytest
from pydantic import BaseModel, Field

MODEL = "smollm2:135m"


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="The city")
    unit: str = Field("celsius", json_schema_extra={"enum": ["celsius", "fahrenheit"]})


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("frameworks")


@pytest.fixture
def key(gateway) -> str:
    return gateway.register()["api_key"]


class Wire:
    """The chat completions a framework sent, as they left its HTTP client."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.clients: list[httpx2.Client] = []

    def _seen(self, request: httpx2.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            self.bodies.append(json.loads(request.content or b"{}"))

    async def _seen_async(self, request: httpx2.Request) -> None:
        self._seen(request)

    def client(self) -> httpx2.Client:
        self.clients.append(httpx2.Client(timeout=60, event_hooks={"request": [self._seen]}))
        return self.clients[-1]

    def async_client(self) -> httpx2.AsyncClient:
        # Keeps no connection open: the agent's event loop is gone by the time the test ends.
        return httpx2.AsyncClient(timeout=60, event_hooks={"request": [self._seen_async]},
                                  limits=httpx2.Limits(max_keepalive_connections=0))


@pytest.fixture
def wire():
    seen = Wire()
    yield seen
    for client in seen.clients:
        client.close()


def usage(gateway, key: str) -> dict:
    response = httpx.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def assert_metered(gateway, key: str, wire: Wire, tokens: int | None = None) -> None:
    """The gateway counted each chat completion the framework sent, and charged tokens for them."""
    standing = usage(gateway, key)
    assert standing["requests"] == len(wire.bodies) > 0
    assert standing["tokens_used"] > 0
    assert standing["tokens_reserved"] == 0
    if tokens is not None:
        assert standing["tokens_used"] == tokens


# --- langchain-openai -----------------------------------------------------------------------------

@pytest.fixture
def chat_model(gateway, key, wire):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60,
                      http_client=wire.client())


def lc_tokens(message) -> int:
    return message.usage_metadata["total_tokens"]


def test_langchain_bind_tools_makes_a_tool_call(gateway, key, wire, chat_model):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str, days: int) -> str:
        """The weather forecast for a city."""
        return "sunny"

    answer = chat_model.bind_tools([get_weather]).invoke("what does get_weather say for Lima?")
    [call] = answer.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "xxxx", "days": 1}
    assert call["id"].startswith("call_")
    assert answer.response_metadata["finish_reason"] == "tool_calls"
    assert_metered(gateway, key, wire, lc_tokens(answer))


def test_langchain_a_tool_result_round_trips(gateway, key, wire, chat_model):
    from langchain_core.messages import HumanMessage, ToolMessage

    model = chat_model.bind_tools([Weather])
    asked = [HumanMessage("ask Weather about Lima")]
    first = model.invoke(asked)
    [call] = first.tool_calls
    assert call["name"] == "Weather" and call["args"] == {"city": "xxxx", "unit": "celsius"}
    second = model.invoke([*asked, first, ToolMessage("sunny, 24 degrees", tool_call_id=call["id"])])
    assert second.tool_calls == [] and second.content == "You said: ask Weather about Lima"
    assert_metered(gateway, key, wire, lc_tokens(first) + lc_tokens(second))


def test_langchain_a_forced_tool_call(gateway, key, wire, chat_model):
    # Nothing in the message names the tool: only tool_choice makes the call.
    answer = chat_model.bind_tools([Weather], tool_choice="any").invoke("how warm is it today?")
    [call] = answer.tool_calls
    assert call["name"] == "Weather" and call["args"] == {"city": "xxxx", "unit": "celsius"}
    assert wire.bodies[0]["tool_choice"] == "required"
    assert_metered(gateway, key, wire, lc_tokens(answer))


def test_langchain_a_streamed_tool_call(gateway, key, wire):
    from langchain_openai import ChatOpenAI

    streaming = ChatOpenAI(model=MODEL, base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60,
                           http_client=wire.client(), stream_usage=True)
    chunks = list(streaming.bind_tools([Weather]).stream("Weather in Quito, please"))
    assembled = chunks[0]
    for chunk in chunks[1:]:
        assembled += chunk
    [call] = assembled.tool_calls
    assert call["name"] == "Weather" and call["args"] == {"city": "xxxx", "unit": "celsius"}
    assert wire.bodies[0]["stream"] is True
    assert_metered(gateway, key, wire, assembled.usage_metadata["total_tokens"])


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output(gateway, key, wire, chat_model, method):
    structured = chat_model.with_structured_output(Person, method=method, include_raw=True)
    result = structured.invoke("Ada Lovelace was 36.")
    assert result["parsing_error"] is None
    assert result["parsed"] == Person(name="xxxx", age=1)
    [sent] = wire.bodies
    if method == "json_schema":
        assert sent["response_format"]["type"] == "json_schema"
    else:
        assert sent["tool_choice"]["function"]["name"] == "Person"
    assert_metered(gateway, key, wire, lc_tokens(result["raw"]))


# --- pydantic-ai ----------------------------------------------------------------------------------

@pytest.fixture
def agent_model(gateway, key, wire):
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{gateway.url}/v1", api_key=key, http_client=wire.async_client())
    return OpenAIChatModel(MODEL, provider=provider)


def agent_tokens(result) -> int:
    run = result.usage
    return run.input_tokens + run.output_tokens


def test_pydantic_ai_agent_with_an_output_type(gateway, key, wire, agent_model):
    from pydantic_ai import Agent

    agent = Agent(agent_model, output_type=Person, instructions="Extract the person.")
    result = agent.run_sync("Ada Lovelace was 36.")
    assert result.output == Person(name="xxxx", age=1)
    assert result.usage.requests == len(wire.bodies) == 1
    assert_metered(gateway, key, wire, agent_tokens(result))


def test_pydantic_ai_native_structured_output(gateway, key, wire, agent_model):
    from pydantic_ai import Agent, NativeOutput

    agent = Agent(agent_model, output_type=NativeOutput(Person))
    result = agent.run_sync("Grace Hopper was 85.")
    assert result.output == Person(name="xxxx", age=1)
    assert wire.bodies[0]["response_format"]["type"] == "json_schema"
    assert result.usage.requests == len(wire.bodies) == 1
    assert_metered(gateway, key, wire, agent_tokens(result))


def test_pydantic_ai_streamed_output_with_model_settings(gateway, key, wire, agent_model):
    from pydantic_ai import Agent

    agent = Agent(agent_model, output_type=Person, model_settings={
        "temperature": 0.0, "top_p": 0.9, "max_tokens": 200, "seed": 7, "stop_sequences": ["###"],
        "parallel_tool_calls": False})
    with agent.run_stream_sync("Ada Lovelace was 36.") as streamed:
        output = streamed.get_output()
        run = streamed.usage
    assert output == Person(name="xxxx", age=1)
    [sent] = wire.bodies
    assert sent["stream"] is True and sent["parallel_tool_calls"] is False
    assert run.requests == 1
    assert_metered(gateway, key, wire, run.input_tokens + run.output_tokens)


def test_pydantic_ai_agent_calls_a_tool_and_answers(gateway, key, wire, agent_model):
    from pydantic_ai import Agent

    agent = Agent(agent_model)
    called: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return "sunny"

    result = agent.run_sync("use get_weather for Lima")
    assert called == ["xxxx"]
    assert result.output == "You said: use get_weather for Lima"
    assert result.usage.requests == len(wire.bodies) == 2
    assert_metered(gateway, key, wire, agent_tokens(result))
