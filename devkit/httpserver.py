"""The HTTP/1.1 server base of every devkit server (the local API, the model server).

Clients keep connections alive, so a response must not wait on Nagle's
algorithm: written in pieces (status line and headers, then the body) on a
socket without TCP_NODELAY, the second piece waits for the client's delayed
ACK of the first, about 40 ms a response. Here a response leaves in one
write (the handler buffers what it writes; the server flushes it once the
response is complete), streamed pieces leave when flushed, and Nagle is off.
The listen backlog holds a burst of clients connecting at once.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Bigger than any response the devkit's servers make in one piece.
_RESPONSE_BUFFER = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Writes collect here until handle_one_request flushes them, or a streamed piece is flushed.
    wbufsize = _RESPONSE_BUFFER


class Server(ThreadingHTTPServer):
    # The kernel caps this at net.core.somaxconn (4096 on current Linux).
    request_queue_size = 1024
