"""Every way a stream of the APIs coding agents speak can end, charged exactly, as a streamed
/v1/chat/completions is (tests/handlers/test_streaming.py, tests/handlers/test_model_server_health.py,
tests/e2e/test_streaming_over_http.py):

  completed          the usage its final event reports (GET /v1/usage and the request log agree)
  reader gone        client_closed: the prompt's held bound and a token per piece handed on
  the deadline       upstream_timeout: the prompt's held bound and a token per piece received,
                     the stream ending with the API's own error event saying what was charged
  upstream failure   upstream_error: the same, for a model server that fails mid-answer

Each API (legacy completions, Anthropic's Messages, OpenAI's Responses) is one row of API_STREAMS:
the request's body, how its pieces are read, what its final usage says, and what its error event
looks like; a new API is one more row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.handlers.conftest import body
from tests.support.accounting import log_lines
from tests.support.anthropic_schemas import assert_event
from tests.support.openai_schemas import assert_conforms

PROMPT = "a b c d"
# Every API here asks for the prompt as one user message: what is held for it, and charged when
# the model server sent no count (it sends one only with the end of an answer).
PROMPT_BOUND = prompt_tokens_upper_bound([Message(role="user", content=PROMPT)])
ANSWER_PIECES = len(f"You said: {PROMPT}".split())  # the development model answers a word a token

Event = tuple[str | None, str]  # a server-sent event: its name (None when it has none) and its data


def events_of(text: str) -> list[Event]:
    found = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((fields.get("event"), fields["data"]))
    return found


# -- each API: its body, its pieces, its final usage, its error event ------------------------------


@dataclass(frozen=True)
class ApiStream:
    path: str
    body: dict
    piece: Callable[[Event], str | None]  # the text of a piece of the answer, None for any other event
    usage: Callable[[list[Event]], int]  # a completed stream's total tokens, as its final event reports them
    error: Callable[[list[Event], str], str]  # a stream ended by its error event (of the code given): its message

    def __str__(self) -> str:
        return self.path


def _completion_piece(event: Event) -> str | None:
    name, data = event
    if name is not None or data == "[DONE]":
        return None
    choices = json.loads(data).get("choices") or []
    return choices[0]["text"] if choices and choices[0].get("finish_reason") is None else None


def _completion_usage(events: list[Event]) -> int:
    *_, (_, finish), (_, usage), (_, done) = events
    assert done == "[DONE]", events[-3:]
    assert json.loads(finish)["choices"][0]["finish_reason"] in ("stop", "length")
    chunk = json.loads(usage)
    assert chunk["choices"] == [], "the usage chunk comes after the finish, with no choices"
    reported = chunk["usage"]
    assert reported["total_tokens"] == reported["prompt_tokens"] + reported["completion_tokens"]
    return reported["total_tokens"]


def _completion_error(events: list[Event], code: str) -> str:
    name, data = events[-1]
    assert name is None and "[DONE]" not in [data for _, data in events], events[-3:]
    error = json.loads(data)
    assert_conforms("ErrorResponse", error, "the error that ends the stream")
    assert set(error) == {"error"} and error["error"]["code"] == code
    return error["error"]["message"]


def _message_piece(event: Event) -> str | None:
    name, data = event
    if name != "content_block_delta":
        return None
    delta = json.loads(data)["delta"]
    return delta["text"] if delta["type"] == "text_delta" else None


def _message_usage(events: list[Event]) -> int:
    names = [name for name, _ in events]
    assert names[-2:] == ["message_delta", "message_stop"], names[-3:]
    usage = json.loads(events[-2][1])["usage"]
    return usage["input_tokens"] + usage["output_tokens"]


def _message_error(events: list[Event], code: str) -> str:
    name, data = events[-1]
    names = [name for name, _ in events]
    assert name == "error" and not {"message_delta", "message_stop"} & set(names), names
    error = json.loads(data)
    assert_event(error, name, "the error that ends the stream")  # Anthropic's ErrorResponse, strictly
    assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
    return error["error"]["message"]


def _response_piece(event: Event) -> str | None:
    name, data = event
    return json.loads(data)["delta"] if name == "response.output_text.delta" else None


def _response_usage(events: list[Event]) -> int:
    name, data = events[-1]
    assert name == "response.completed", [name for name, _ in events][-3:]
    usage = json.loads(data)["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    return usage["total_tokens"]


def _response_error(events: list[Event], code: str) -> str:
    name, data = events[-1]
    assert name == "response.failed", [name for name, _ in events][-3:]
    event = json.loads(data)
    assert_conforms("ResponseFailedEvent", event, "the event that ends the stream")
    assert event["response"]["status"] == "failed"
    return event["response"]["error"]["message"]


API_STREAMS = [
    ApiStream("/v1/completions",
              {"model": "smollm2:135m", "prompt": PROMPT, "max_tokens": 20, "stream": True,
               "stream_options": {"include_usage": True}},
              _completion_piece, _completion_usage, _completion_error),
    ApiStream("/v1/messages",
              {"model": "smollm2:135m", "max_tokens": 20, "stream": True,
               "messages": [{"role": "user", "content": PROMPT}]},
              _message_piece, _message_usage, _message_error),
    ApiStream("/v1/responses",
              {"model": "smollm2:135m", "input": PROMPT, "max_output_tokens": 20, "stream": True, "store": False},
              _response_piece, _response_usage, _response_error),
]


@pytest.fixture(params=API_STREAMS, ids=str)
def stream(request) -> ApiStream:
    return request.param


# -- the harness ---------------------------------------------------------------------------------


def pieces(stream: ApiStream, events: Iterable[Event]) -> list[str]:
    return [text for event in events if (text := stream.piece(event)) is not None]


def charged(api, key: str, database) -> tuple[int, dict]:
    """What GET /v1/usage says was charged, once nothing is held any more, and the request's one
    line in the request log, which must say the same."""
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["tokens_reserved"], usage["requests"]) == (0, 1), usage
    [line] = log_lines(database)
    assert line["total_tokens"] == line["prompt_tokens"] + line["completion_tokens"] == usage["tokens_used"], line
    return usage["tokens_used"], line


def cut_message(tokens: int) -> str:
    return f"The {tokens} tokens used before it ended were charged."


# -- the endings -----------------------------------------------------------------------------------


def test_a_completed_stream_is_charged_the_usage_its_final_event_reports(api, database, stream):
    key = api.register()["api_key"]
    response = api.call("POST", stream.path, key=key, body=stream.body)

    assert response["statusCode"] == 200 and response["streamed"], response
    events = events_of(response["body"])
    assert pieces(stream, events), "the answer came in pieces"
    reported = stream.usage(events)
    tokens, line = charged(api, key, database)
    assert tokens == reported
    assert line["status"] == "ok"


def test_a_reader_gone_mid_answer_is_charged_the_prompts_bound_and_the_pieces_handed_on(
    faulty, faults, database, stream,
):
    api = faulty()
    key = api.register()["api_key"]
    faults(mode="trickle", piece_seconds=0.05)
    streamed = api.invoke("POST", stream.path, key=key, body=stream.body)
    assert streamed.prelude["statusCode"] == 200
    read: list[Event] = []
    for chunk in streamed:  # read until the second piece, the model still answering
        read += events_of(chunk.decode())
        if len(pieces(stream, read)) == 2:
            break

    streamed.close()

    tokens, line = charged(api, key, database)
    assert line["status"] == "client_closed"
    # Every piece is handed on as it arrives, none read ahead: the two read are all that were received.
    assert (line["prompt_tokens"], line["completion_tokens"]) == (PROMPT_BOUND, 2)
    assert tokens == PROMPT_BOUND + 2


def test_a_stream_cut_by_its_deadline_ends_with_its_error_event_and_is_charged_what_was_generated(
    faulty, faults, database, stream,
):
    api = faulty(OLLAMA_STREAM_TIMEOUT="2")
    key = api.register()["api_key"]
    # A piece every 0.6 s: the first well within the 2 s deadline, the whole answer (3.6 s) well beyond it.
    faults(mode="trickle", piece_seconds=0.6)
    response = api.call("POST", stream.path, key=key, body=stream.body)

    assert response["statusCode"] == 200 and response["streamed"]
    events = events_of(response["body"])
    received = pieces(stream, events)
    assert 1 <= len(received) < ANSWER_PIECES, "cut off mid-answer"
    message = stream.error(events, "upstream_timeout")
    tokens, line = charged(api, key, database)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (
        "upstream_timeout", PROMPT_BOUND, len(received))
    assert tokens == PROMPT_BOUND + len(received)
    assert cut_message(tokens) in message


def test_a_model_server_failing_mid_stream_ends_it_with_its_error_event_and_charges_the_pieces(
    faulty, faults, database, stream,
):
    api = faulty()
    key = api.register()["api_key"]
    faults(mode="break", after_pieces=2)
    response = api.call("POST", stream.path, key=key, body=stream.body)

    assert response["statusCode"] == 200 and response["streamed"]
    events = events_of(response["body"])
    assert len(pieces(stream, events)) == 2
    message = stream.error(events, "upstream_error")
    tokens, line = charged(api, key, database)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == ("upstream_error", PROMPT_BOUND, 2)
    assert tokens == PROMPT_BOUND + 2
    assert cut_message(tokens) in message


@pytest.mark.parametrize("withdrawal", ["suspend", "revoke"])
def test_a_stream_whose_caller_is_suspended_or_whose_key_is_revoked_ends_charged_what_it_produced(
    faulty, faults, database, withdrawal,
):
    from infergate.domain.administration import create_admin_key
    from infergate.domain.periods import utc_now
    from infergate.stores.accounts import MongoAccountStore

    api = faulty()
    account = api.register()
    spare = body(api.call("POST", "/v1/keys", key=account["api_key"]))
    admin = create_admin_key("ops", "admin", store=MongoAccountStore(database), now=utc_now())[1]
    stream = API_STREAMS[0]
    faults(mode="trickle", piece_seconds=0.4)
    streamed = api.invoke("POST", "/v1/completions", key=spare["api_key"], body={**stream.body, "prompt": "a " * 30})
    read: list[Event] = []
    for chunk in streamed:
        read += events_of(chunk.decode())
        if len(pieces(stream, read)) == 1:
            if withdrawal == "suspend":
                changed = api.call("PATCH", f"/admin/v1/users/{account['user_id']}", key=admin,
                                   body={"status": "suspended"})
            else:
                changed = api.call("DELETE", f"/v1/keys/{spare['key_id']}", key=account["api_key"])
            assert changed["statusCode"] == 200, body(changed)
    code = "account_suspended" if withdrawal == "suspend" else "invalid_api_key"
    message = stream.error(read, code)
    received = len(pieces(stream, read))
    assert 1 <= received < 33, "ended mid-answer (33 pieces at 0.4 s each), within seconds of the change"
    [line] = [line for line in log_lines(database) if line["status"] == code]
    assert line["completion_tokens"] >= received and cut_message(line["total_tokens"]) in message
