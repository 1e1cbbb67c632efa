"""A TCP proxy that counts the requests clients send to Redis or MongoDB, by command.

The benchmark puts one in front of each store while it counts what a chat
costs: every request a client sends is a round trip it waits for (InferGate
pipelines nothing), and counting on the wire sees only what clients send,
not the commands a Lua script runs inside Redis.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable

import bson


def redis_commands(stream: bytearray) -> list[str]:
    """Complete RESP commands at the head of `stream` (removed from it), by name."""
    names = []
    while True:
        if not stream.startswith(b"*"):
            return names
        header_end = stream.find(b"\r\n")
        if header_end < 0:
            return names
        position, parts = header_end + 2, []
        for _ in range(int(stream[1:header_end])):
            length_end = stream.find(b"\r\n", position)
            if length_end < 0:
                return names
            length = int(stream[position + 1:length_end])
            if len(stream) < length_end + 2 + length + 2:
                return names
            parts.append(bytes(stream[length_end + 2:length_end + 2 + length]))
            position = length_end + 2 + length + 2
        del stream[:position]
        names.append(parts[0].decode().upper() if parts else "?")


OP_MSG = 2013


def mongo_commands(stream: bytearray) -> list[str]:
    """Complete MongoDB wire messages at the head of `stream` (removed from it), by command."""
    names = []
    while len(stream) >= 16:
        length, _, _, opcode = struct.unpack_from("<iiii", stream)
        if len(stream) < length:
            return names
        message = bytes(stream[:length])
        del stream[:length]
        if opcode == OP_MSG and message[20] == 0:  # flag bits, then a kind-0 section: the command
            size = struct.unpack_from("<i", message, 21)[0]
            names.append(next(iter(bson.decode(message[21:21 + size]))))
        else:
            names.append(f"opcode {opcode}")
    return names


class Wiretap:
    def __init__(self, target: tuple[str, int], parse: Callable[[bytearray], list[str]], *,
                 listener: socket.socket | None = None) -> None:
        """A proxy to `target` on a port of its own, or on `listener`, a bound socket it listens on."""
        self._target, self._parse = target, parse
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener = listener or socket.create_server(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.create_connection(self._target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        pending = bytearray()
        try:
            while data := source.recv(65536):
                if requests:
                    pending += data
                    names = self._parse(pending)
                    with self._lock:
                        self.counts.update(names)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
