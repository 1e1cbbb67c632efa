"""The gateway's Ollama client against real HTTP servers: answers, errors, deadlines, and when
it retries (only if the request cannot have reached the server)."""

from __future__ import annotations

import time

import httpx
import pytest
from devkit.backends import free_port
from devkit.ollama.engines import DeterministicEngine

from infergate.domain.errors import ModelNotFound, ModelServerBusy, UpstreamError, UpstreamTimeout
from infergate.domain.messages import Message
from infergate.domain.pool import Server
from infergate.llm import client as http_client
from infergate.llm.client import HttpModelServer
from infergate.llm.connections import ModelServerConnections
from infergate.llm.discovery import discover
from infergate.llm.ollama_wire import OllamaWire
from tests.support.waiting import wait_for

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="what is two plus two")]


def ollama(connections: ModelServerConnections, **timeouts: float) -> HttpModelServer:
    return HttpModelServer(connections, OllamaWire(), **{"timeout": 5, "stall_timeout": 5, **timeouts})


def client(url: str, timeout: float = 5, stall: float = 5) -> HttpModelServer:
    return ollama(ModelServerConnections(url, connect_timeout=1), timeout=timeout, stall_timeout=stall)


class Refusing(ModelServerConnections):
    """Connections to `url` whose first `refusals` attempts are refused, as a server that is
    starting or restarting refuses them; counts the attempts."""

    def __init__(self, url: str, refusals: int) -> None:
        super().__init__(url, connect_timeout=1)
        self.refusals, self.attempts = refusals, 0

    def take(self):
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise ConnectionRefusedError("refused")
        return super().take()


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(http_client.time, "sleep", lambda seconds: None)


def test_a_streamed_answer_is_assembled_with_ollamas_own_counts(ollama_url):
    completion = client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=100, request_id="rid-1")
    wire = [{"role": m.role, "content": m.content} for m in MESSAGES]
    assert completion.content == " ".join(DeterministicEngine.answer_words(wire))
    assert completion.prompt_tokens == DeterministicEngine.count_prompt_tokens(wire)
    assert completion.completion_tokens == len(DeterministicEngine.answer_words(wire))
    assert completion.done_reason == "stop"


def test_max_tokens_reaches_ollama_as_num_predict(ollama_url):
    completion = client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2, request_id="rid-2")
    assert (completion.content, completion.completion_tokens, completion.done_reason) == ("You said:", 2, "length")


def test_the_request_id_reaches_ollama(ollama_url):
    client(ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=1, request_id="trace-me-42")
    seen = httpx.get(f"{ollama_url}/_devkit/requests").json()
    assert any(r["x-request-id"] == "trace-me-42" and r["body"]["options"]["num_predict"] == 1 for r in seen)


def test_an_unknown_model_is_named(ollama_url):
    with pytest.raises(ModelNotFound, match="nope"):
        client(ollama_url).chat(model="nope", messages=MESSAGES, max_tokens=5, request_id="r")


def test_nothing_listening_is_an_upstream_error():
    with pytest.raises(UpstreamError):
        client(f"http://127.0.0.1:{free_port()}").chat(model="m", messages=MESSAGES, max_tokens=5, request_id="r")


def test_an_answer_slower_than_the_deadline_is_cut_off_at_the_deadline_with_what_it_generated(faulty_ollama_url, faults):
    faults(mode="trickle", piece_seconds=0.2)
    started = time.monotonic()
    completion = client(faulty_ollama_url, timeout=0.5).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=50,
                                                             request_id="r")
    assert time.monotonic() - started < 1.5
    assert completion.cut.code == "upstream_timeout"
    assert not completion.cut.server_unwell, "tokens were flowing: the request was too long, the server is fine"
    # A piece every 0.2 s for 0.5 s: two, give or take one on a loaded machine, and exactly those counted.
    assert 1 <= completion.completion_tokens == len(completion.pieces) <= 3
    assert "You said: what is two plus two".startswith(completion.content) and completion.prompt_tokens is None


def test_a_server_silent_for_the_stall_interval_is_unwell_and_what_came_before_is_kept(faulty_ollama_url, faults):
    faults(mode="stall", after_pieces=2, seconds=5)
    started = time.monotonic()
    completion = client(faulty_ollama_url, timeout=5, stall=0.3).chat(model="smollm2:135m", messages=MESSAGES,
                                                                      max_tokens=50, request_id="r")
    assert time.monotonic() - started < 2
    assert completion.cut.code == "upstream_timeout" and completion.cut.server_unwell
    assert completion.completion_tokens == 2


def test_a_server_that_never_sends_a_byte_is_unwell_after_the_stall_interval(faulty_ollama_url, faults):
    faults(mode="hang", seconds=5)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as raised:
        client(faulty_ollama_url, timeout=5, stall=0.3).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=5,
                                                             request_id="r")
    assert time.monotonic() - started < 2
    assert raised.value.server_unwell


@pytest.mark.parametrize(("status", "error"), [(500, UpstreamError), (503, ModelServerBusy)])
def test_the_servers_5xx_is_a_sign_it_is_unwell(faulty_ollama_url, faults, status, error):
    faults(mode="status", status=status)
    with pytest.raises(error) as raised:
        client(faulty_ollama_url).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=5, request_id="r")
    assert raised.value.server_unwell


def test_one_kept_alive_connection_serves_chat_after_chat(ollama_url):
    model = client(ollama_url)
    for request_id in ("first-of-two", "second-of-two"):
        model.chat(model="smollm2:135m", messages=MESSAGES, max_tokens=3, request_id=request_id)
    seen = {r["x-request-id"]: r["client_port"] for r in httpx.get(f"{ollama_url}/_devkit/requests").json()}
    assert seen["first-of-two"] == seen["second-of-two"]


def test_a_stream_hands_on_each_piece_as_it_arrives_then_the_completion(faulty_ollama_url, faults):
    faults(mode="trickle", piece_seconds=0.2)
    started = time.monotonic()
    answer = client(faulty_ollama_url).stream(model="smollm2:135m", messages=MESSAGES, max_tokens=4, request_id="r")
    pieces = [(time.monotonic() - started, piece) for piece in answer]

    completion = answer.completion
    assert [piece for _, piece in pieces] == ["You", " said:", " what", " is"]
    assert pieces[-1][0] - pieces[0][0] >= 0.3, "three gaps of 0.2 s lie between the first piece and the last"
    assert completion.content == "You said: what is" and completion.completion_tokens == 4


def test_a_stream_closed_early_closes_its_connection_and_the_next_answer_is_whole(faulty_ollama_url, faults):
    model = client(faulty_ollama_url)
    faults(mode="trickle", piece_seconds=0.1)
    stream = model.stream(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="closed-early")
    pieces = iter(stream)
    assert [next(pieces), next(pieces)] == ["You", " said:"]

    stream.close()

    completion = model.chat(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="after-it")
    assert completion.cut is None and completion.content == "You said: what is two plus two"
    seen = {r["x-request-id"]: r["client_port"] for r in httpx.get(f"{faulty_ollama_url}/_devkit/requests").json()}
    assert seen["closed-early"] != seen["after-it"], "a half-read answer's connection is never reused"


def test_a_streams_own_timeout_is_the_lesser_of_the_clients_and_the_callers(faulty_ollama_url, faults):
    faults(mode="trickle", piece_seconds=0.2)
    model = ollama(ModelServerConnections(faulty_ollama_url, connect_timeout=1), timeout=0.2, stream_timeout=5)
    answer = model.stream(model="smollm2:135m", messages=MESSAGES, max_tokens=50, request_id="r", timeout=0.7)
    for _ in answer:
        pass
    completion = answer.completion
    assert completion.cut.code == "upstream_timeout" and "0.7 s" in completion.cut.reason
    assert 2 <= completion.completion_tokens <= 4, "longer than the client's 0.2 s for whole answers"


def test_the_model_list_comes_from_the_server(ollama_url):
    held = discover(Server("ollama"), ModelServerConnections(ollama_url, connect_timeout=1))
    assert [entry.name for entry in held.models] == ["smollm2:135m", "tiny:latest"]


def test_a_refused_connection_is_retried(ollama_url, no_backoff):
    connections = Refusing(ollama_url, refusals=2)
    assert ollama(connections).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2,
                                                     request_id="r").content == "You said:"
    assert connections.attempts == 3


def test_retries_give_up_after_two(ollama_url, no_backoff):
    connections = Refusing(ollama_url, refusals=5)
    with pytest.raises(UpstreamError, match="could not be reached"):
        ollama(connections).chat(model="smollm2:135m", messages=MESSAGES, max_tokens=2,
                                                                   request_id="r")
    assert connections.attempts == 3


@pytest.mark.parametrize("fault", [{"mode": "reset"}, {"mode": "drop", "after_pieces": 1}, {"mode": "break", "after_pieces": 1}])
def test_nothing_that_may_have_reached_ollama_is_retried(faulty_ollama_url, faults, fault, no_backoff):
    faults(count=1, **fault)
    connections = Refusing(faulty_ollama_url, refusals=0)
    try:
        completion = ollama(connections).chat(
            model="smollm2:135m", messages=MESSAGES, max_tokens=5, request_id="r")
    except UpstreamError:
        assert fault["mode"] == "reset"
    else:  # cut off after a piece: returned with what was generated, and why it ended
        assert completion.cut.code in {"upstream_error", "upstream_timeout"} and completion.completion_tokens == 1
    assert connections.attempts == 1


def test_a_kept_alive_connection_the_server_has_closed_is_not_lent_again():
    """A server (or a proxy before it) that closes idle connections sooner than the client would
    reuse them: the next request goes on a new connection, not into a 502."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.sendall(answer)
            connection.close()  # its idle timeout, at once

    threading.Thread(target=serve, daemon=True).start()
    connections = ModelServerConnections(f"http://127.0.0.1:{port}", connect_timeout=2)
    first = connections.take()
    first.request("GET", "/")
    response = first.getresponse()
    assert response.read() == b"ok"
    connections.give_back(first, response)
    wait_for(lambda: _closed(first), what="the server closing the idle connection")
    second = connections.take()
    assert second is not first
    second.request("GET", "/")
    assert second.getresponse().read() == b"ok"
    listener.close()


def _closed(connection) -> bool:
    import select

    return bool(select.select([connection.sock], [], [], 0)[0])
