"""The HTTP/1.1 server base of every devkit server (the local API, the model server).

Clients keep connections alive, so a response must not wait on Nagle's
algorithm: written in pieces (status line and headers, then the body) on a
socket without TCP_NODELAY, the second piece waits for the client's delayed
ACK of the first, about 40 ms a response. Here a response leaves in one
write (the handler buffers what it writes; the server flushes it once the
response is complete), streamed pieces leave when flushed, and Nagle is off.
The listen backlog holds a burst of clients connecting at once.

A request body is read only once its framing says it fits (read_body): a
Content-Length that is not a number of bytes, or more than `max_body`, is
refused before a byte of the body is read, and a chunked body is read up to
`max_body` and no further. A refused body is never read; the connection is
closed after the refusal, once the client has had a moment to read it. A
client that goes away mid-request or mid-response is nothing to report.

A development server, but not one a slow client can hold: a request's line and
headers must arrive within `header_seconds` (a client sending a byte every few
seconds, under the idle timeout, is cut off there), and at most
`max_connections` are open at once, each holding a thread; one more is answered
503 and closed at once.
"""

from __future__ import annotations

import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Bigger than any response the devkit's servers make in one piece.
_RESPONSE_BUFFER = 1 << 20
_LINE_MAX = 1024  # a chunk-size line or a trailer field
_TRAILERS_MAX = 32
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(;[^\r\n]*)?\r?\n")
# How long a refused client may go on sending before the connection closes: closed with unread
# data, a socket sends a reset, which can destroy the refusal before the client has read it.
_LINGER_SECONDS = 2.0


class BodyRefused(Exception):
    """A request body the server does not read: 400 (its framing is malformed) or 413 (too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Writes collect here until handle_one_request flushes them, or a streamed piece is flushed.
    wbufsize = _RESPONSE_BUFFER
    # The largest request body read; None: no limit.
    max_body: int | None = None
    # The longest chunk-size line or trailer field read.
    max_line: int = _LINE_MAX

    def setup(self) -> None:
        super().setup()
        self.body_unread = False

    def handle_one_request(self) -> None:
        # The header deadline runs from the request's first byte: a kept-alive connection idle
        # between requests is the idle timeout's (`timeout`) to end, not the deadline's. (A client
        # that pipelines requests, which no common client does, waits for that timeout here.)
        if not _readable(self.connection, self.timeout):
            self.close_connection = True
            return
        self.server.reading(self)
        try:
            super().handle_one_request()
        finally:
            self.server.read(self)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self.server.read(self)  # they are in: the body and the answer take what they take
        return parsed

    def finish(self) -> None:
        super().finish()  # flushes the response
        if self.body_unread:
            _linger(self.connection)

    def body_length(self) -> int | None:
        """The body's length from Content-Length (0 without one), or None for a chunked body;
        BodyRefused if the framing is malformed or says more than `max_body`."""
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        encodings = [value.strip().lower() for value in self.headers.get_all("Transfer-Encoding") or []]
        if encodings:
            if lengths:  # which one frames the body is how requests get smuggled: neither
                raise BodyRefused(400, "A request may not have both Content-Length and Transfer-Encoding.")
            if encodings != ["chunked"]:
                raise BodyRefused(400, "The only Transfer-Encoding accepted is chunked.")
            return None
        if not lengths:
            return 0
        length = lengths.pop()
        if lengths or not re.fullmatch(r"[0-9]+", length):
            raise BodyRefused(400, "Content-Length must be one whole number of bytes.")
        if self.max_body is not None and (len(length) > len(str(self.max_body)) or int(length) > self.max_body):
            raise BodyRefused(413, f"The request body may be at most {self.max_body} bytes.")
        return int(length)

    def read_body(self) -> bytes:
        """The request body. BodyRefused as body_length says, or for a malformed or oversized chunked
        body (what is left of it is then unread); ConnectionError or TimeoutError if the client went
        away or went quiet before sending all of it."""
        try:
            return b"".join(self.body_pieces(limit=self.max_body))
        except BodyRefused:
            self.body_unread = True
            raise

    def body_pieces(self, trailers: dict[str, str] | None = None, *, limit: int | None = None) -> Iterator[bytes]:
        """The request body as it arrives: all of a sized one (body_length refuses one over
        `max_body`), or each chunk of a chunked one, BodyRefused once they pass `limit`; then the
        chunked body's trailer fields, into `trailers`."""
        length = self.body_length()
        if length is not None:
            if length:
                yield self._read_exactly(length)
            return
        total = 0
        while size := self._chunk_size():
            total += size
            if limit is not None and total > limit:
                raise BodyRefused(413, f"The request body may be at most {limit} bytes.")
            data = self._read_exactly(size)
            if self._read_exactly(2) != b"\r\n":
                raise BodyRefused(400, "A chunk must end with CRLF.")
            yield data
        fields = self._trailers()
        if trailers is not None:
            trailers.update(fields)

    def handle_expect_100(self) -> bool:
        # A body that would be refused is refused before the client sends it.
        try:
            self.body_length()
        except BodyRefused as refused:
            self.body_unread = True
            self.refuse_body(refused)
            return False
        if not super().handle_expect_100():
            return False
        self.wfile.flush()  # the client waits for it before it sends the body
        return True

    def refuse_body(self, refused: BodyRefused) -> None:
        """Answers a refused body; a subclass answers in its own terms. The connection then closes."""
        self.send_error(refused.status, refused.message)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise ConnectionAbortedError("the client closed the connection mid-request")
        return data

    def _chunk_size(self) -> int:
        line = self._line()
        found = _CHUNK_SIZE.fullmatch(line)
        if found is None:
            raise BodyRefused(400, "Malformed chunk size.")
        return int(found.group(1), 16)

    def _trailers(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for _ in range(_TRAILERS_MAX):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return fields
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        raise BodyRefused(400, "Too many trailer fields.")

    def _line(self) -> bytes:
        line = self.rfile.readline(self.max_line + 1)
        if not line:
            raise ConnectionAbortedError("the client closed the connection mid-request")
        if len(line) > self.max_line:
            raise BodyRefused(400, "A chunk-size line or trailer field is too long.")
        return line


def _readable(sock: socket.socket, seconds: float | None) -> bool:
    """Whether `sock` has something to read (or has been closed) within `seconds` (None: waits).
    poll, not select: a busy server's descriptors pass select's limit of 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(None if seconds is None else seconds * 1000))


def _linger(connection: socket.socket) -> None:
    """Say nothing more, and drop what the client still sends for a moment, before closing."""
    scratch = bytearray(1 << 16)
    deadline = time.monotonic() + _LINGER_SECONDS
    try:
        connection.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv_into(scratch):
                return
    except OSError:  # reset, or the moment has passed
        pass


class Server(ThreadingHTTPServer):
    # The kernel caps this at net.core.somaxconn (4096 on current Linux).
    request_queue_size = 1024
    max_connections = 1024
    header_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = threading.BoundedSemaphore(self.max_connections)
        self._reading: dict[Handler, float] = {}  # requests whose line and headers are still arriving
        self._reading_lock = threading.Lock()
        threading.Thread(target=self._cut_off_slow_headers, name="header-deadline", daemon=True).start()

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self._open.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.release()

    def reading(self, handler: Handler) -> None:
        with self._reading_lock:
            self._reading[handler] = time.monotonic() + self.header_seconds

    def read(self, handler: Handler) -> None:
        with self._reading_lock:
            self._reading.pop(handler, None)

    def _cut_off_slow_headers(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._reading_lock:
                late = [handler for handler, deadline in self._reading.items() if deadline < now]
            for handler in late:
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)  # its pending read ends at once
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closed or reset its connection mid-request or mid-response, or went
        # quiet past the timeout, has nobody left to answer: no traceback for it.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)
