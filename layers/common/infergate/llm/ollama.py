"""Ollama's HTTP API: `POST /api/chat` streamed as NDJSON with a hard deadline,
`POST /api/embed`, and `GET /api/tags`, cached briefly.

`stream()` hands on each piece of an answer as it arrives; `chat()` is the
same exchange, read to its end. Closing a stream closes its connection,
which stops Ollama generating.

Streaming lets the gateway see an error Ollama reports after it has already
sent `200` (an `{"error": ...}` line), and lets it stop at the deadline
rather than after a single long read. The deadline covers the whole
exchange: connect, prompt evaluation and every token.

A call is retried only when nothing can have been generated: the
connection was refused or could not be made, so the request never reached
Ollama. Anything later (a reset, a timeout, a broken stream) may have
started a generation and is never retried.

An answer cut off after pieces arrived (the deadline, a stall, a broken
stream) is returned with what was generated and why it ended, so that the
tokens are charged. No byte for the stall interval means the server is
unwell; the deadline reached while pieces flow means the request was too
long for it.
"""

from __future__ import annotations

import heapq
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.ports import Completion, Embedding, ModelEntry
from infergate.domain.tools import new_call_id
from infergate.errors import (
    InferGateError,
    InvalidRequest,
    ModelNotFound,
    ModelServerBusy,
    UpstreamError,
    UpstreamTimeout,
)
from infergate.llm.connections import ModelServerConnections
from infergate.observability import logger
from infergate.tracing import span

T = TypeVar("T")
CONNECT_RETRIES = 2
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0
CATALOG_TIMEOUT_SECONDS = 3.0


class _Unreachable(Exception):
    """No connection could be made: the request was never sent."""


class _Answer:
    """What arrived of one answer so far, and when the last of it did."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.last_piece_at = 0.0

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self.last_piece_at = time.monotonic()

    def cut(self, model: str, failure: UpstreamError) -> Completion:
        return Completion.cut(model, self.pieces, failure)


class _Lent:
    """A connection lent to one request, and its response once there is one."""

    def __init__(self, connection: http.client.HTTPConnection, base_path: str) -> None:
        self.connection, self._base_path = connection, base_path
        self.response: http.client.HTTPResponse | None = None

    def send(self, path: str, body: bytes, request_id: str) -> http.client.HTTPResponse:
        self.connection.request("POST", self._base_path + path, body=body,
                                headers={"Content-Type": "application/json", "x-request-id": request_id})
        self.response = self.connection.getresponse()
        return self.response


class OllamaClient:
    def __init__(self, connections: ModelServerConnections, *, timeout: float, stall_timeout: float,
                 stream_timeout: float | None = None) -> None:
        self._connections = connections
        self._timeout = timeout  # an answer given in one piece, and an embedding
        self._stream_timeout = timeout if stream_timeout is None else stream_timeout
        self._stall = stall_timeout

    def chat(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None,
    ) -> Completion:
        stream = self._stream(self._request(model, messages, max_tokens, options, tools, answer_format), model,
                              request_id, _Deadline(self._timeout))
        *_, completion = stream  # read to its end, so that the connection goes back for reuse
        return completion  # type: ignore[return-value]

    def stream(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> Generator[str | Completion, None, None]:
        """Each piece of the answer as it arrives, then the Completion, within the stream timeout, or
        `timeout` if the caller has less time. Closed early, the connection closes and Ollama stops."""
        seconds = self._stream_timeout if timeout is None else min(timeout, self._stream_timeout)
        return self._stream(self._request(model, messages, max_tokens, options, tools, answer_format), model,
                            request_id, _Deadline(seconds))

    @staticmethod
    def _request(model: str, messages: list[Message], max_tokens: int, options: dict | None, tools: Sequence[Tool],
                 answer_format: str | Mapping[str, Any] | None) -> bytes:
        request: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(message) for message in messages],
            "stream": True,
            "options": {**(options or {}), "num_predict": max_tokens},
        }
        if tools:
            request["tools"] = [{"type": "function", "function": {
                "name": tool.name, "description": tool.description, "parameters": tool.parameters}} for tool in tools]
        if answer_format is not None:
            request["format"] = answer_format
        return json.dumps(request).encode()

    def _stream(self, body: bytes, model: str, request_id: str,
                deadline: _Deadline) -> Generator[str | Completion, None, None]:
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                yield from self._exchange(body, model, request_id, deadline)
                return
            except _Unreachable:  # raised before any piece: the stream can start afresh
                self._pause_before_retry(attempt, deadline)

    def embed(self, *, model: str, inputs: Sequence[str], dimensions: int | None, request_id: str) -> Embedding:
        # truncate: false, so that an input longer than the model's context is refused, not cut short.
        request: dict[str, Any] = {"model": model, "input": list(inputs), "truncate": False}
        if dimensions is not None:
            request["dimensions"] = dimensions
        body = json.dumps(request).encode()
        reply = self._retrying(lambda deadline: self._post(body, "/api/embed", model, request_id, deadline))
        vectors = reply.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamError("The model server answered without an embedding for each input.")
        count = reply.get("prompt_eval_count")
        return Embedding(model=reply.get("model") or model, vectors=tuple(tuple(vector) for vector in vectors),
                         prompt_tokens=count if isinstance(count, int) else None)

    def _retrying(self, exchange: Callable[[_Deadline], T]) -> T:
        """`exchange` within one deadline, sent again only if the server never saw it."""
        deadline = _Deadline(self._timeout)
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                return exchange(deadline)
            except _Unreachable:
                self._pause_before_retry(attempt, deadline)
        raise AssertionError("unreachable")

    @staticmethod
    def _pause_before_retry(attempt: int, deadline: _Deadline) -> None:
        """Refused or never connected: Ollama never saw the request, so it is safe to send again,
        after a pause; UpstreamError once the retries or the time are spent."""
        pause = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * random.random()
        if attempt == CONNECT_RETRIES or deadline.remaining() <= pause:
            raise UpstreamError("The model server could not be reached.") from None
        logger.warning("model server unreachable; retrying", extra={"attempt": attempt + 1})
        time.sleep(pause)

    def _exchange(self, body: bytes, model: str, request_id: str,
                  deadline: _Deadline) -> Generator[str | Completion, None, None]:
        answer = _Answer()
        with self._lent(deadline) as lent:
            try:
                response = lent.send("/api/chat", body, request_id)
                if response.status != 200:
                    raise _status_error(response.status, response.read(), model)
                yield from _read_stream(response, model, answer)
            except (InferGateError, http.client.HTTPException, OSError, ValueError) as error:
                failure = self._failure(error, deadline, answer)
                if answer.pieces and isinstance(failure, UpstreamError):
                    yield answer.cut(model, failure)
                    return
                raise failure from None

    def _post(self, body: bytes, path: str, model: str, request_id: str, deadline: _Deadline) -> dict:
        """A request answered in one JSON object."""
        with self._lent(deadline) as lent:
            try:
                response = lent.send(path, body, request_id)
                data = response.read()
                if response.status != 200:
                    raise _status_error(response.status, data, model)
                reply = json.loads(data)
                if not isinstance(reply, dict):
                    raise ValueError("not an object")
                return reply
            except (InferGateError, http.client.HTTPException, OSError, ValueError) as error:
                raise self._failure(error, deadline, _Answer()) from None

    @contextmanager
    def _lent(self, deadline: _Deadline) -> Iterator[_Lent]:
        """A connection for one request, ended at the deadline, kept for the next if it can be."""
        try:
            connection = self._connections.take()
        except OSError as error:
            raise _Unreachable() from error
        lent = _Lent(connection, self._connections.base_path)
        try:
            # Each read waits at most the stall interval: a server silent that long is unwell.
            connection.sock.settimeout(max(0.001, min(self._stall, deadline.remaining())))
            deadline.watch(connection.sock)
            with span("model server"):
                yield lent
        finally:
            deadline.cancel()
            if lent.response is not None and not deadline.expired:
                self._connections.give_back(connection, lent.response)
            else:
                connection.close()

    def _failure(self, error: Exception, deadline: _Deadline, answer: _Answer) -> InferGateError:
        if deadline.expired:
            flowing = bool(answer.pieces) and time.monotonic() - answer.last_piece_at < self._stall
            return UpstreamTimeout(f"The model server did not finish within {deadline.seconds:g} s.", server_unwell=not flowing)
        if isinstance(error, TimeoutError):
            return UpstreamTimeout(f"The model server sent nothing for {self._stall:g} s.")
        if isinstance(error, InferGateError):
            return error
        return UpstreamError("The model server broke off its answer.")


class OllamaCatalog:
    """The server's models (`GET /api/tags`), kept for `ttl` seconds; a failure, for less."""

    def __init__(self, connections: ModelServerConnections, *, ttl: float = 30.0, failure_ttl: float = 5.0) -> None:
        self._connections = connections
        self._ttl, self._failure_ttl = ttl, failure_ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[ModelEntry] | None] | None = None

    def models(self) -> list[ModelEntry] | None:
        with self._lock:
            if self._cached and time.monotonic() < self._cached[0]:
                return self._cached[1]
            models = self._fetch()
            self._cached = (time.monotonic() + (self._ttl if models is not None else self._failure_ttl), models)
            return models

    def _fetch(self) -> list[ModelEntry] | None:
        connection = response = None
        try:
            connection = self._connections.take()
            connection.sock.settimeout(CATALOG_TIMEOUT_SECONDS)
            connection.request("GET", f"{self._connections.base_path}/api/tags")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            return [ModelEntry(m["name"], _timestamp(m.get("modified_at"))) for m in json.loads(body).get("models", [])]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError, AttributeError):
            logger.warning("could not list the model server's models")
            return None
        finally:
            if connection is not None:
                if response is not None:
                    self._connections.give_back(connection, response)
                else:
                    connection.close()


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _wire_message(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [{"function": {"name": call.name, "arguments": dict(call.arguments)}}
                              for call in message.tool_calls]
    if message.tool_name:
        wire["tool_name"] = message.tool_name
    if message.images:
        wire["images"] = list(message.images)
    return wire


def _tool_calls(message: dict) -> list[ToolCall]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):  # some servers send a JSON string, as OpenAI does
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                arguments = None
        if not isinstance(function.get("name"), str) or not isinstance(arguments, dict):
            # What the model wrote, not a sign that the server is unwell.
            raise UpstreamError("The model made a tool call without a name or with arguments that are not an object.",
                                server_unwell=False)
        calls.append(ToolCall(new_call_id(), function["name"], arguments))
    return calls


def _read_stream(response: http.client.HTTPResponse, requested_model: str,
                 answer: _Answer) -> Generator[str | Completion, None, None]:
    calls: list[ToolCall] = []
    for line in response:
        if not line.strip():
            continue
        chunk = json.loads(line)
        if "error" in chunk:
            raise UpstreamError(f"The model server failed while answering: {chunk['error']}")
        message = chunk.get("message") or {}
        piece = message.get("content", "")
        calls += _tool_calls(message)
        if piece:
            answer.add(piece)
            yield piece
        if chunk.get("done"):
            response.read()  # the end of the chunked body, so that the connection can be reused
            yield Completion(
                model=chunk.get("model") or requested_model,
                content="".join(answer.pieces),
                prompt_tokens=chunk.get("prompt_eval_count"),
                completion_tokens=int(chunk.get("eval_count") or 0),
                done_reason=chunk.get("done_reason"),
                pieces=tuple(answer.pieces),
                tool_calls=tuple(calls),
            )
            return
    raise UpstreamError("The model server ended its answer without a final message.")


def _status_error(status: int, body: bytes, model: str) -> InferGateError:
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = ""
    if status == 404 and "not found" in message:
        return ModelNotFound.naming(model)
    if status == 400:  # the request, not the server: e.g. tools offered to a model that cannot call them
        return InvalidRequest(f"The model server refused the request: {message or 'no detail'}")
    if status == 503:
        return ModelServerBusy("The model server is busy; retry shortly.", headers={"Retry-After": "1"})
    return UpstreamError(f"The model server answered {status}: {message or 'no detail'}")


class _Deadline:
    """Ends a streamed response at the deadline by shutting its socket.

    A socket timeout bounds each read, not the whole exchange; shutting the
    socket down wakes the read that is blocked and ends the stream at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._sock: socket.socket | None = None
        self.expired = False

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        self._sock = sock
        _watchdog.watch(self)

    def expire(self) -> None:
        self.expired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        except OSError:
            pass

    def cancel(self) -> None:
        _watchdog.cancel(self)


class _Watchdog:
    """One thread per instance that expires deadlines as they pass (a timer thread per
    request would cost a thread start on every chat)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Deadline]] = []
        self._count = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._changed:
            self._count += 1
            heapq.heappush(self._due, (deadline.at, self._count, deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ollama-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

    def cancel(self, deadline: _Deadline) -> None:
        with self._changed:
            self._due = [entry for entry in self._due if entry[2] is not deadline]
            heapq.heapify(self._due)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    heapq.heappop(self._due)[2].expire()
                self._changed.wait(self._due[0][0] - now if self._due else None)


_watchdog = _Watchdog()
