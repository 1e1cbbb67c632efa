"""Kept-alive HTTP/1.1 connections to the model server, made once and reused.

The standard library's http.client rather than a general-purpose client:
reading Ollama's NDJSON stream through it costs a third of the CPU that
httpx's does (measured: 0.5 against 1.7 ms per 16-token answer), and every
chat pays it. A connection is lent to one request at a time; one that saw
an error, or that the server means to close, is not lent again.
"""

from __future__ import annotations

import http.client
import select
import threading
import time
from urllib.parse import urlsplit

# Kept below the idle timeouts of servers and proxies in front of Ollama, so that a
# kept-alive connection is not closed by the far end just as a request is sent on it.
IDLE_SECONDS = 30.0


class ModelServerConnections:
    def __init__(self, base_url: str, *, connect_timeout: float, api_key: str = "",
                 ping_path: str = "/api/version") -> None:
        """`api_key`: sent as a bearer token with every request, for a server that wants one;
        `ping_path`: a cheap GET that answers 200 while the server is up."""
        url = urlsplit(base_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        self.base_path = url.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._ping_path = ping_path
        self._connect_timeout = connect_timeout
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        """A connected connection: an idle one, or a new one. Raises OSError if the server
        cannot be connected to, in which case it never saw a request."""
        now = time.monotonic()
        with self._lock:
            while self._idle:
                since, connection = self._idle.pop()
                if now - since < IDLE_SECONDS and not _closed_by_the_server(connection):
                    return connection
                connection.close()
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self._connect_timeout)
        connection.connect()
        return connection

    def ping(self, *, timeout: float) -> None:
        """Returns if the server answers its ping path with 200 within `timeout`; else raises."""
        self.get(self._ping_path, timeout=timeout)

    def get(self, path: str, *, timeout: float) -> bytes:
        """The body of `GET path` if the server answers 200 within `timeout`; else OSError."""
        connection = self.take()
        try:
            connection.sock.settimeout(timeout)
            connection.request("GET", self.base_path + path, headers=self.headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise OSError(f"status {response.status}")
            return body
        except http.client.HTTPException as error:
            raise OSError(f"bad answer: {type(error).__name__}") from error
        finally:
            connection.close()

    def give_back(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        """Keep `connection` for another request if its response was read to the end and the
        server keeps it open; else close it."""
        if response.isclosed() and not response.will_close and connection.sock is not None:
            with self._lock:
                self._idle.append((time.monotonic(), connection))
        else:
            connection.close()


def _closed_by_the_server(connection: http.client.HTTPConnection) -> bool:
    """Whether the far end has closed an idle connection (or sent what it should not have): it
    reads as ready with nothing owed. A request sent on it would fail, and a chat be lost as a
    502 that counts against the server's breaker, though the server is well."""
    if connection.sock is None:
        return True
    poller = select.poll()  # not select: a descriptor past 1024 is beyond it
    poller.register(connection.sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))
