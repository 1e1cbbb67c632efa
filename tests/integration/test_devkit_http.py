"""The devkit's HTTP servers on real sockets: no Nagle delays, room for bursts of clients."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from devkit.gateway import LocalApiServer, Response

from tests.support.waiting import wait_for


class Echo:
    """Stands in for the gateway: answers every request with its path."""

    def handle(self, request):
        return Response(200, [("Content-Type", "text/plain")], request.path.encode())


@pytest.fixture
def api():
    server = LocalApiServer(("127.0.0.1", 0), Echo())
    server.start()
    yield server
    server.stop()


def test_accepted_connections_have_nagle_off(api):
    connection = http.client.HTTPConnection(*api.server_address[:2], timeout=10)
    connection.request("GET", "/one")
    assert connection.getresponse().read() == b"/one"
    with api._connections_lock:
        accepted = [handler.connection for handler in api._connections]
    assert accepted and all(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in accepted)
    connection.close()


def test_a_response_leaves_in_one_write(api, monkeypatch):
    writes = []
    for name in ("send", "sendall"):
        original = getattr(socket.socket, name)

        def recording(sock, data, *args, original=original):
            writes.append(bytes(data))
            return original(sock, data, *args)

        monkeypatch.setattr(socket.socket, name, recording)
    connection = http.client.HTTPConnection(*api.server_address[:2], timeout=10)
    connection.request("GET", "/whole")
    response = connection.getresponse()
    assert response.read() == b"/whole"
    connection.close()
    server_writes = [data for data in writes if data.startswith(b"HTTP/1.1")]
    assert len(server_writes) == 1 and server_writes[0].endswith(b"/whole")


def test_a_burst_of_clients_connecting_at_once_is_served(api):
    clients = 200
    barrier = threading.Barrier(clients)

    def one(index: int) -> int:
        barrier.wait()
        connection = http.client.HTTPConnection(*api.server_address[:2], timeout=30)
        try:
            connection.request("GET", f"/{index}")
            response = connection.getresponse()
            assert response.read() == f"/{index}".encode()
            return response.status
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        assert list(pool.map(one, range(clients))) == [200] * clients


class Guarded(LocalApiServer):
    max_connections = 3
    header_seconds = 1.0


@pytest.fixture
def guarded():
    server = Guarded(("127.0.0.1", 0), Echo())
    server.start()
    yield server
    server.stop()


def test_a_client_trickling_its_headers_is_cut_off_at_the_header_deadline(guarded):
    slow = socket.create_connection(guarded.server_address[:2], timeout=30)
    slow.sendall(b"GET /slow HTTP/1.1\r\n")
    started = time.monotonic()
    try:
        while True:  # a header line every half second: never idle long enough for the idle timeout
            slow.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.5)
    except OSError:
        pass  # the server has closed the connection
    assert time.monotonic() - started < 10
    connection = http.client.HTTPConnection(*guarded.server_address[:2], timeout=10)
    connection.request("GET", "/fast")
    assert connection.getresponse().read() == b"/fast", "a prompt client is still served"


def test_a_kept_alive_connection_idle_past_the_header_deadline_is_still_served(guarded):
    connection = http.client.HTTPConnection(*guarded.server_address[:2], timeout=10)
    connection.request("GET", "/first")
    assert connection.getresponse().read() == b"/first"
    time.sleep(guarded.header_seconds + 1)  # idle, between requests: the idle timeout's to end, not the deadline's
    connection.request("GET", "/second")
    assert connection.getresponse().read() == b"/second"


def test_connections_beyond_the_cap_are_answered_503_at_once(guarded):
    held = [socket.create_connection(guarded.server_address[:2], timeout=10) for _ in range(3)]
    wait_for(lambda: len(guarded._connections) == 3, what="the three connections accepted")
    extra = http.client.HTTPConnection(*guarded.server_address[:2], timeout=10)
    extra.request("GET", "/extra")
    assert extra.getresponse().status == 503
    for sock in held:
        sock.close()
    wait_for(lambda: _answers(guarded), what="a freed connection served again")


def _answers(server) -> bool:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        connection.request("GET", "/again")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
