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

import http.client
import json
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from infergate.domain.errors import InferGateError, UpstreamError, UpstreamTimeout
from infergate.domain.messages import Message, Tool
from infergate.domain.model_server import Completion, Embedding
from infergate.llm.connections import ModelServerConnections
from infergate.llm.deadlines import Deadline
from infergate.llm.wire import Answer, chat_request, read_stream, status_error
from infergate.observability import logger
from infergate.tracing import span

T = TypeVar("T")
CONNECT_RETRIES = 2
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0


class _Unreachable(Exception):
    """No connection could be made: the request was never sent."""


class _Streamed:
    """An answer as it arrives (the domain's AnswerStream): its pieces, then its completion."""

    def __init__(self, events: Generator[str | Completion, None, None]) -> None:
        self._events = events
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        # Read to the exchange's end, past its completion, so that its connection goes back for reuse.
        for event in self._events:
            if isinstance(event, Completion):
                self.completion = event
            else:
                yield event

    def close(self) -> None:
        """Closes the connection, which stops Ollama generating."""
        self._events.close()


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
        answer = _Streamed(self._stream(chat_request(model, messages, max_tokens, options, tools, answer_format),
                                        model, request_id, Deadline(self._timeout)))
        for _ in answer:
            pass
        assert answer.completion is not None, "an answer read to its end has its completion"
        return answer.completion

    def stream(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> _Streamed:
        """Each piece of the answer as it arrives, then its Completion, within the stream timeout, or
        `timeout` if the caller has less time. Closed early, the connection closes and Ollama stops."""
        seconds = self._stream_timeout if timeout is None else min(timeout, self._stream_timeout)
        return _Streamed(self._stream(chat_request(model, messages, max_tokens, options, tools, answer_format), model,
                                      request_id, Deadline(seconds)))

    def _stream(self, body: bytes, model: str, request_id: str,
                deadline: Deadline) -> Generator[str | Completion, None, None]:
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

    def _retrying(self, exchange: Callable[[Deadline], T]) -> T:
        """`exchange` within one deadline, sent again only if the server never saw it."""
        deadline = Deadline(self._timeout)
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                return exchange(deadline)
            except _Unreachable:
                self._pause_before_retry(attempt, deadline)
        raise AssertionError("unreachable")

    @staticmethod
    def _pause_before_retry(attempt: int, deadline: Deadline) -> None:
        """Refused or never connected: Ollama never saw the request, so it is safe to send again,
        after a pause; UpstreamError once the retries or the time are spent."""
        pause = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * random.random()
        if attempt == CONNECT_RETRIES or deadline.remaining() <= pause:
            raise UpstreamError("The model server could not be reached.") from None
        logger.warning("model server unreachable; retrying", extra={"attempt": attempt + 1})
        time.sleep(pause)

    def _exchange(self, body: bytes, model: str, request_id: str,
                  deadline: Deadline) -> Generator[str | Completion, None, None]:
        answer = Answer()
        with self._lent(deadline) as lent:
            try:
                response = lent.send("/api/chat", body, request_id)
                if response.status != 200:
                    raise status_error(response.status, response.read(), model)
                yield from read_stream(response, model, answer)
            except (InferGateError, http.client.HTTPException, OSError, ValueError) as error:
                failure = self._failure(error, deadline, answer)
                if answer.pieces and isinstance(failure, UpstreamError):
                    yield answer.cut(model, failure)
                    return
                raise failure from None

    def _post(self, body: bytes, path: str, model: str, request_id: str, deadline: Deadline) -> dict:
        """A request answered in one JSON object."""
        with self._lent(deadline) as lent:
            try:
                response = lent.send(path, body, request_id)
                data = response.read()
                if response.status != 200:
                    raise status_error(response.status, data, model)
                reply = json.loads(data)
                if not isinstance(reply, dict):
                    raise ValueError("not an object")
                return reply
            except (InferGateError, http.client.HTTPException, OSError, ValueError) as error:
                raise self._failure(error, deadline, Answer()) from None

    @contextmanager
    def _lent(self, deadline: Deadline) -> Iterator[_Lent]:
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

    def _failure(self, error: Exception, deadline: Deadline, answer: Answer) -> InferGateError:
        if deadline.expired:
            flowing = bool(answer.pieces) and time.monotonic() - answer.last_piece_at < self._stall
            return UpstreamTimeout(f"The model server did not finish within {deadline.seconds:g} s.", server_unwell=not flowing)
        if isinstance(error, TimeoutError):
            return UpstreamTimeout(f"The model server sent nothing for {self._stall:g} s.")
        if isinstance(error, InferGateError):
            return error
        return UpstreamError("The model server broke off its answer.")


