"""The gateway's client of an OpenAI-compatible model server (vLLM, llama-server), against the
development server's /v1 routes over real HTTP: answers whole and streamed, tool calls, usage
from `stream_options.include_usage`, errors, an API key, embeddings; and the servers' holdings
discovered once and shared through Redis."""

from __future__ import annotations

import httpx
import pytest

from infergate.domain.errors import InvalidRequest, ModelNotFound, ModelServerBusy, UpstreamError
from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.pool import LLAMA_CPP, OPENAI, VLLM, Server
from infergate.llm.catalog import SharedCatalog
from infergate.llm.client import HttpModelServer
from infergate.llm.connections import ModelServerConnections
from infergate.llm.discovery import discover
from infergate.llm.ollama_wire import OllamaWire
from infergate.llm.openai_wire import OpenAIWire
from infergate.stores.holdings import RedisHoldings
from tests.support import services

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="what is two plus two")]
WEATHER = Tool("weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}},
                                                       "required": ["city"]})


def openai(url: str, *, api_key: str = "", kind: str = OPENAI, **timeouts: float) -> HttpModelServer:
    connections = ModelServerConnections(url, connect_timeout=1, api_key=api_key, ping_path="/v1/models")
    return HttpModelServer(connections, OpenAIWire(kind), **{"timeout": 5, "stall_timeout": 5, **timeouts})


def test_a_whole_answer_is_charged_the_servers_own_usage(ollama_url):
    completion = openai(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=3, request_id="r1")
    native = HttpModelServer(ModelServerConnections(ollama_url, connect_timeout=1), OllamaWire(), timeout=5,
                             stall_timeout=5).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=3, request_id="n")
    assert completion.content == native.content == "You said: what"
    assert (completion.prompt_tokens, completion.completion_tokens, completion.done_reason) == (
        native.prompt_tokens, 3, "length"), "the same conversation costs the same on either API"
    assert completion.cut is None
    seen = httpx.get(f"{ollama_url}/_devkit/requests").json()
    assert any(r.get("x-request-id") == "r1" and r["path"] == "/v1/chat/completions" for r in seen)


def test_a_streamed_answer_arrives_piece_by_piece_then_its_usage(ollama_url):
    answer = openai(ollama_url).stream(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="r")
    pieces = list(answer)
    assert "".join(pieces) == "You said: what is two plus two" and len(pieces) > 1
    assert answer.completion.completion_tokens == len(pieces) and answer.completion.prompt_tokens == 16
    assert answer.completion.done_reason == "stop"


@pytest.mark.parametrize("kind", [VLLM, LLAMA_CPP])
def test_a_server_that_counts_as_it_answers_gives_a_cut_answer_its_prompts_real_count(faulty_ollama_url, faults, kind):
    faults("break", after_pieces=3)
    answer = openai(faulty_ollama_url, kind=kind).stream(model="smollm2:135m", messages=MESSAGES, max_tokens=50,
                                                          request_id="c")
    pieces = list(answer)
    assert len(pieces) == 3 and answer.completion.cut is not None
    assert answer.completion.prompt_tokens == 16, "the count the server said while answering, not the bound"


def test_a_plain_openai_server_is_sent_no_field_it_may_refuse(faulty_ollama_url, faults):
    faults("break", after_pieces=3)
    answer = openai(faulty_ollama_url).stream(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="p")
    list(answer)
    assert answer.completion.cut is not None and answer.completion.prompt_tokens is None
    sent = [r for r in httpx.get(f"{faulty_ollama_url}/_devkit/requests").json() if r.get("x-request-id") == "p"]
    assert sent and all(r["body"]["stream_options"] == {"include_usage": True} and "timings_per_token" not in r["body"]
                        for r in sent)


def test_a_tool_call_and_its_result_go_both_ways(ollama_url):
    model = openai(ollama_url)
    asked = model.chat(model="smollm2:135m", messages=[Message("user", "weather in Oslo?")], max_tokens=50,
                       request_id="t1", tools=[WEATHER])
    (call,) = asked.tool_calls
    assert call.name == "weather" and call.arguments == {"city": "xxxx"} and call.id
    answered = model.chat(model="smollm2:135m", request_id="t2", tools=[WEATHER], max_tokens=50, messages=[
        Message("user", "weather in Oslo?"), Message("assistant", "", tool_calls=(ToolCall(call.id, "weather", {"city": "Oslo"}),)),
        Message("tool", "sunny", tool_name="weather", tool_call_id=call.id)])
    assert answered.content.startswith("You said:")


def test_an_answer_format_is_asked_for_as_openai_says_it(ollama_url):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    completion = openai(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="f",
                                         answer_format=schema)
    assert isinstance(completion.content, str) and completion.content


@pytest.mark.parametrize(("status", "error"), [(404, ModelNotFound), (400, InvalidRequest), (503, ModelServerBusy),
                                               (500, UpstreamError)])
def test_each_error_status_means_what_it_means_for_ollama(faulty_ollama_url, faults, status, error):
    faults(mode="status", status=status)
    with pytest.raises(error):
        openai(faulty_ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=3, request_id="e")


def test_a_server_that_wants_a_key_gets_it_and_refuses_a_wrong_one():
    with services.model_server("--api-key", "s3cret") as url:
        assert openai(url, api_key="s3cret").chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2,
                                                  request_id="k").content == "You said:"
        with pytest.raises(UpstreamError, match="credentials"):
            openai(url, api_key="wrong").chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2, request_id="k")
        held = discover(Server("vllm", kind=OPENAI), ModelServerConnections(url, connect_timeout=1, api_key="s3cret"))
        assert {entry.name for entry in held.models} == {"smollm2:135m", "tiny:latest"} == held.loaded


def test_embeddings_come_one_per_input_with_their_usage(ollama_url):
    embedding = openai(ollama_url).embed(model="smollm2:135m", inputs=["a", "b c"], dimensions=None, request_id="v")
    assert len(embedding.vectors) == 2 and embedding.prompt_tokens == 3


def test_one_instances_discovery_serves_every_instance(redis_client, ollama_url):
    asked = []

    def discovered(server: Server):
        asked.append(server.name)
        return discover(server, ModelServerConnections(ollama_url, connect_timeout=1))

    pool = [Server("a"), Server("b", kind=OPENAI)]
    first = SharedCatalog(pool, discovered, RedisHoldings(redis_client, prefix="cat:"))
    second = SharedCatalog(pool, discovered, RedisHoldings(redis_client, prefix="cat:"))
    held = first.holdings()
    assert sorted(asked) == ["a", "b"], "the first instance asked each server once"
    assert second.holdings() == held and sorted(asked) == ["a", "b"], "the second read what the first found"
    assert {entry.name for entry in held["a"].models} == {"smollm2:135m", "tiny:latest"}


def test_a_server_that_stops_answering_keeps_the_models_it_served(redis_client):
    with services.model_server() as url:
        catalog = SharedCatalog([Server("gone")], lambda server: discover(server, ModelServerConnections(
            url, connect_timeout=1)), RedisHoldings(redis_client, prefix="gone:"))
        assert catalog.holdings()["gone"].reachable
    later = catalog.refresh(catalog.holdings())
    assert not later["gone"].reachable and {e.name for e in later["gone"].models} == {"smollm2:135m", "tiny:latest"}
