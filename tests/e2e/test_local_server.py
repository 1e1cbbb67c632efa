"""The local API server turns away what API Gateway would, before reading it, and shrugs off clients
that leave: a body's framing is checked before a byte of the body is read, nothing past API
Gateway's 10 MB payload limit is ever buffered, and a client that closes or resets its connection
mid-request or mid-response is no traceback."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from devkit import template
from devkit.gateway import MAX_PAYLOAD, LocalApiGateway, LocalApiServer

from tests.support.paths import ROOT
from tests.support.waiting import wait_for

API = template.load(ROOT / "template.yaml").api
WAIT = 30  # seconds: far beyond what any answer here takes on a loaded machine


class Echo:
    """Stands in for every function: answers with the body it was sent, and keeps the events."""

    spec = SimpleNamespace(timeout=30)

    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, event: dict, *, timeout: float | None = None) -> dict:
        self.events.append(event)
        return {"statusCode": 200, "body": event["body"] or "", "isBase64Encoded": event["isBase64Encoded"]}


class Held(Echo):
    """Answers with a body far bigger than a socket's buffers, once released."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.released = threading.Event(), threading.Event()

    def invoke(self, event: dict, *, timeout: float | None = None) -> dict:
        self.asked.set()
        assert self.released.wait(WAIT)
        return {"statusCode": 200, "body": "x" * (16 << 20)}


@contextmanager
def serving(function: Echo) -> Iterator[LocalApiServer]:
    every_function = defaultdict(lambda: function)
    server = LocalApiServer(("127.0.0.1", 0), LocalApiGateway(API, every_function))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def api(echo) -> Iterator[LocalApiServer]:
    with serving(echo) as server:
        yield server


def connect(server: LocalApiServer) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=WAIT)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock, method="POST")
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def post(server: LocalApiServer, headers: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """POST /v1/register with exactly these header lines and body bytes, as a client could send them."""
    with connect(server) as sock:
        sock.sendall(f"POST /v1/register HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode() + body)
        return answer(sock)


def refused(status: int, headers: dict[str, str], body: bytes) -> int:
    """The status of a refusal shaped like every error of the API, on a connection that closes."""
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "bad_request", error
    return status


def holds(server: LocalApiServer, *, busy: bool | None = None) -> bool:
    """Whether the server holds a connection (one it is answering, with busy=True)."""
    with server._connections_lock:
        return any(busy is None or state == busy for state in server._connections.values())


def wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, timeout=WAIT, interval=0.01, what=what)


def reset(sock: socket.socket) -> None:
    """Close with a reset rather than an orderly goodbye, as a client that gives up often does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1.5", "0x10", "5, 5", ""])
def test_a_content_length_that_is_not_a_number_of_bytes_is_400(api, echo, length):
    assert refused(*post(api, f"Content-Length: {length}\r\n", b"hello")) == 400
    assert echo.events == []


def test_two_different_content_lengths_are_400(api, echo):
    assert refused(*post(api, "Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")) == 400
    assert echo.events == []


@pytest.mark.parametrize("length", [MAX_PAYLOAD + 1, 200 << 20, 10**40])
def test_a_content_length_past_api_gateways_limit_is_413_before_the_body_is_read(api, echo, length):
    tracemalloc.start()
    try:
        # Only a little of the body is ever sent: the answer comes without waiting for the rest.
        status = refused(*post(api, f"Content-Length: {length}\r\n", b"x" * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert peak < 8 << 20  # nothing the size of the body was ever allocated
    assert echo.events == []


def test_a_body_past_the_limit_is_refused_before_the_client_sends_it(api, echo):
    with connect(api) as sock:
        sock.sendall(f"POST /v1/register HTTP/1.1\r\nHost: localhost\r\nContent-Length: {200 << 20}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        assert refused(*answer(sock)) == 413  # not 100 Continue
    assert echo.events == []


def test_a_body_at_the_limit_is_read_whole(api, echo):
    status, _, body = post(api, f"Content-Length: {MAX_PAYLOAD}\r\n", b"a" * MAX_PAYLOAD)
    assert status == 200 and len(body) == MAX_PAYLOAD


def test_a_chunked_body_is_read_whole(api, echo):
    chunks = b"5\r\nhello\r\n6;note=ext\r\n world\r\n0\r\nX-Trailer: ignored\r\n\r\n"
    status, _, body = post(api, "Transfer-Encoding: chunked\r\n", chunks)
    assert (status, body) == (200, b"hello world")


def test_a_chunked_body_past_the_limit_is_413_before_the_chunk_is_read(api, echo):
    chunks = f"{MAX_PAYLOAD + 1:x}\r\n".encode() + b"x" * 1024
    assert refused(*post(api, "Transfer-Encoding: chunked\r\n", chunks)) == 413
    assert echo.events == []


@pytest.mark.parametrize(("headers", "body"), [
    ("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),  # not a chunk size
    ("Transfer-Encoding: chunked\r\n", b"5\r\nhello!!0\r\n\r\n"),  # a chunk longer than it said
    ("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),  # an encoding it does not decode
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),  # two framings: which one?
])
def test_a_malformed_or_ambiguous_framing_is_400(api, echo, headers, body):
    assert refused(*post(api, headers, body)) == 400
    assert echo.events == []


@pytest.mark.parametrize("leave", [socket.socket.close, reset], ids=["closes", "resets"])
def test_a_client_that_leaves_mid_request_reaches_no_function_and_no_traceback(capfd, echo, leave):
    with serving(echo) as server:
        sock = connect(server)
        sock.sendall(b"POST /v1/register HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b")
        wait_until(lambda: holds(server, busy=True), "the server never started reading the request")
        leave(sock)
        wait_until(lambda: not holds(server), "the server kept the connection")
    # Stopped: the connection's thread has finished, with whatever it had to say.
    assert echo.events == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_client_that_leaves_mid_response_is_no_traceback(capfd):
    held = Held()
    with serving(held) as server:
        sock = connect(server)
        sock.sendall(b"POST /v1/register HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        assert held.asked.wait(WAIT)
        reset(sock)
        held.released.set()  # the answer now goes to a connection that is gone
    assert "Traceback" not in capfd.readouterr().err


def test_a_malformed_request_line_is_a_json_400(api):
    with connect(api) as sock:
        sock.sendall(b"NOT A REQUEST LINE AT ALL\r\n\r\n")
        assert refused(*answer(sock)) == 400


def test_a_body_within_the_limit_is_asked_for_at_once(api, echo):
    with connect(api) as sock:
        sock.sendall(b"POST /v1/register HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        status, _, body = answer(sock)
    assert (status, body) == (200, b"hello")
