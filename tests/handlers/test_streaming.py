"""Streamed chats, in-process: the events each route sends, and how every ending is charged."""

from __future__ import annotations

import json

import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.handlers.conftest import body, header
from tests.support.accounting import log_lines
from tests.support.functions import reset_instance_state

PROMPT = "one two three four five six seven eight"
PROMPT_BOUND = prompt_tokens_upper_bound([Message(role="user", content=PROMPT)])
OPENAI = {"model": "smollm2:135m", "messages": [{"role": "user", "content": PROMPT}], "stream": True}


def events(text: str) -> list[tuple[str | None, str]]:
    """Server-sent events as (event name or None, data)."""
    found = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields.get("event"), fields["data"]))
    return found


def usage(api, key: str) -> dict:
    return body(api.call("GET", "/v1/usage", key=key))


@pytest.fixture
def faulty(api, monkeypatch, faulty_ollama_url):
    monkeypatch.setenv("OLLAMA_URL", faulty_ollama_url)
    reset_instance_state()
    return api


def test_openai_chunks_carry_the_role_first_then_the_pieces_the_finish_the_usage_and_done(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat/completions", key=key,
                        body={**OPENAI, "stream_options": {"include_usage": True}})

    assert response["statusCode"] == 200 and response["streamed"]
    assert header(response, "Content-Type") == "text/event-stream"
    *chunks, done = [data for _, data in events(response["body"])]
    assert done == "[DONE]"
    chunks = [json.loads(chunk) for chunk in chunks]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks[1:-2])
    assert len(chunks) - 3 >= 2, "one chunk per piece the model sent"
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == usage(api, key)["tokens_used"]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert content


def test_a_chat_not_streamed_on_a_streamed_route_leaves_whole_in_a_streamed_response(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": PROMPT})
    assert response["statusCode"] == 200 and response["streamed"]
    assert body(response)["usage"]["total_tokens"] == usage(api, key)["tokens_used"]


def test_v1_chat_streams_delta_events_then_done_with_the_whole_answer(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": PROMPT, "stream": True})

    sent = events(response["body"])
    assert [name for name, _ in sent[:-1]] == ["delta"] * (len(sent) - 1) and sent[-1][0] == "done"
    done = json.loads(sent[-1][1])
    assert "".join(json.loads(data)["content"] for _, data in sent[:-1]) == done["response"]
    assert done["usage"]["total_tokens"] == usage(api, key)["tokens_used"] > 0


def test_refusals_before_the_answer_keep_their_status(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/chat/completions", key=key, body={**OPENAI, "model": "no-such-model"})
    assert response["statusCode"] == 400 and response["streamed"]
    assert body(response)["error"]["code"] == "model_not_found"


def test_a_reader_gone_mid_stream_stops_the_answer_and_is_charged_what_was_generated(faulty, faults, database):
    key = faulty.register()["api_key"]
    faults(mode="trickle", piece_seconds=0.05)
    streamed = faulty.invoke("POST", "/v1/chat", key=key, body={"prompt": PROMPT, "stream": True, "max_tokens": 50})
    chunks = iter(streamed)
    next(chunks)  # the prelude and the first piece
    next(chunks)

    streamed.close()

    [line] = log_lines(database)
    assert line["status"] == "client_closed" and line["prompt_tokens"] == PROMPT_BOUND
    assert 2 <= line["completion_tokens"] < 50
    used = usage(faulty, key)
    assert (used["tokens_used"], used["tokens_reserved"]) == (PROMPT_BOUND + line["completion_tokens"], 0)


def test_a_model_error_mid_stream_ends_it_with_an_error_event_and_charges_the_pieces(faulty, faults, database):
    key = faulty.register()["api_key"]
    faults(mode="break", after_pieces=2)
    response = faulty.call("POST", "/v1/chat/completions", key=key, body=OPENAI)

    *chunks, (_, last) = events(response["body"])
    assert "[DONE]" not in [data for _, data in chunks]
    error = json.loads(last)["error"]
    assert error["code"] == "upstream_error"
    assert f"The {PROMPT_BOUND + 2} tokens used before it ended were charged." in error["message"]
    assert "".join(json.loads(c)["choices"][0]["delta"].get("content") or "" for _, c in chunks[1:])
    assert usage(faulty, key)["tokens_used"] == PROMPT_BOUND + 2
    [line] = log_lines(database)
    assert (line["status"], line["completion_tokens"]) == ("upstream_error", 2)


def test_a_completed_stream_is_replayed_whole_and_charged_once(api):
    key = api.register()["api_key"]
    first = api.call("POST", "/v1/chat/completions", key=key, body=OPENAI, headers={"Idempotency-Key": "s-1"})
    again = api.call("POST", "/v1/chat/completions", key=key, body=OPENAI, headers={"Idempotency-Key": "s-1"})

    assert again["body"] == first["body"] and again["streamed"]
    assert header(again, "Idempotent-Replayed") == "true" and header(first, "Idempotent-Replayed") is None
    assert usage(api, key)["requests"] == 1


def keyed_stream(api, key: str, idempotency_key: str, *, read: bool = True):
    """A streamed /v1/chat with an Idempotency-Key: read to its end, or, with `read=False`, not yet read."""
    send = api.call if read else api.invoke
    return send("POST", "/v1/chat", key=key, body={"prompt": PROMPT, "stream": True},
                headers={"Idempotency-Key": idempotency_key})


def test_a_stream_cut_off_leaves_its_key_free(faulty, faults):
    key = faulty.register()["api_key"]
    faults(mode="break", after_pieces=1)
    cut = keyed_stream(faulty, key, "s-2")
    retried = keyed_stream(faulty, key, "s-2")

    assert events(cut["body"])[-1][0] == "error" and events(retried["body"])[-1][0] == "done"
    assert header(retried, "Idempotent-Replayed") is None
    assert usage(faulty, key)["requests"] == 2


def test_a_reader_gone_leaves_the_key_free_too(faulty, faults):
    key = faulty.register()["api_key"]
    faults(mode="trickle", piece_seconds=0.05)
    streamed = keyed_stream(faulty, key, "s-3", read=False)
    next(iter(streamed))
    streamed.close()
    retried = keyed_stream(faulty, key, "s-3")
    assert header(retried, "Idempotent-Replayed") is None and events(retried["body"])[-1][0] == "done"
