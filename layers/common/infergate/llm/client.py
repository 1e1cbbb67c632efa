"""A model server over HTTP: a chat streamed with a hard deadline, and an embedding, in the
server's own wire format (llm/ollama_wire.py for Ollama's API, llm/openai_wire.py for any
OpenAI-compatible server: vLLM, llama.cpp's llama-server, SGLang, TGI).

`stream()` hands on each piece of an answer as it arrives; `chat()` is the
same exchange, read to its end. Closing a stream closes its connection,
which stops the server generating.

Streaming lets the gateway see an error the server reports after it has already
sent `200` (an error line or event), and lets it stop at the deadline
rather than after a single long read. The deadline covers the whole
exchange: connect, prompt evaluation and every token.

A call is retried on the same server only when nothing can have been
generated: the connection was refused or could not be made, so the request
never reached it. In a pool it is not retried here: another server is
asked instead (domain/meter.py). Anything later (a reset, a timeout, a
broken stream) may have started a generation and is never retried.

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
from typing import Any, Protocol, TypeVar

from infergate.domain.errors import InferGateError, UpstreamError, UpstreamTimeout
from infergate.domain.messages import Message, Tool
from infergate.domain.model_server import Completion, CutOff, Embedding, Piece, Thought, said
from infergate.llm.connections import ModelServerConnections
from infergate.llm.deadlines import Deadline
from infergate.observability import logger
from infergate.tracing import span

T = TypeVar("T")
CONNECT_RETRIES = 2
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0


class Answer:
    """What arrived of one answer so far, and when the last of it did."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.last_piece_at = 0.0
        self.prompt_tokens: int | None = None  # as the server said while answering, if it did

    def add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.last_piece_at = time.monotonic()

    def said(self) -> str:
        """The answer so far, thoughts left out."""
        return said(self.pieces)

    def thought(self, text: str) -> Thought:
        """A piece of thought, added."""
        piece = Thought(text)
        self.add(piece)
        return piece

    def cut(self, model: str, failure: UpstreamError) -> Completion:
        """What arrived, ended by `failure`: charged for what was generated, then its error given."""
        return Completion.partial(model, self.pieces, CutOff(failure.code, failure.message, failure.server_unwell),
                                  prompt_tokens=self.prompt_tokens)


def embedding_of(vectors: Any, model: str, inputs: int, prompt_tokens: Any) -> Embedding:
    """The Embedding of a reply's `vectors`, one per input, or UpstreamError if they are not."""
    if not isinstance(vectors, list) or len(vectors) != inputs or not all(isinstance(v, list) for v in vectors):
        raise UpstreamError("The model server answered without an embedding for each input.")
    return Embedding(model=model, vectors=tuple(tuple(vector) for vector in vectors),
                     prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None)


class Wire(Protocol):
    """A server's API: where its routes are, what their bodies are, and how it answers."""

    embed_path: str

    def chat_path(self, suffix: str | None) -> str:
        """Where a chat goes: a fill-in-the-middle (a prompt and a `suffix`) may go elsewhere."""

    def chat_body(self, model: str, messages: list[Message], max_tokens: int, options: dict | None,
                  tools: Sequence[Tool], answer_format: str | Mapping[str, Any] | None, *, think: bool = False,
                  suffix: str | None = None) -> bytes:
        """A streamed chat's body, asking for at most `max_tokens`; ThinkingUnsupported if the server
        cannot be asked to think."""

    def read(self, response: http.client.HTTPResponse, model: str,
             answer: Answer) -> Generator[Piece | Completion, None, None]:
        """Each piece of the answer (or of a thought), added to `answer`, then its Completion."""

    def embed_body(self, model: str, inputs: Sequence[str], dimensions: int | None) -> bytes: ...

    def embedding(self, reply: dict, model: str, inputs: int) -> Embedding:
        """The embedding a reply holds, one vector per input, or UpstreamError."""

    def status_error(self, status: int, body: bytes, model: str) -> InferGateError:
        """What a status other than 200 means."""


class _Unreachable(Exception):
    """No connection could be made: the request was never sent."""


class _Streamed:
    """An answer as it arrives (the domain's AnswerStream): its pieces, then its completion."""

    def __init__(self, events: Generator[Piece | Completion, None, None], answer: Answer) -> None:
        self._events, self._answer = events, answer
        self.completion: Completion | None = None

    @property
    def prompt_tokens(self) -> int | None:
        return self._answer.prompt_tokens

    def __iter__(self) -> Iterator[Piece]:
        # Read to the exchange's end, past its completion, so that its connection goes back for reuse.
        for event in self._events:
            if isinstance(event, Completion):
                self.completion = event
            else:
                yield event

    def close(self) -> None:
        """Closes the connection, which stops the server generating."""
        self._events.close()


class _Lent:
    """A connection lent to one request, and its response once there is one."""

    def __init__(self, connection: http.client.HTTPConnection, connections: ModelServerConnections) -> None:
        self.connection, self._connections = connection, connections
        self.response: http.client.HTTPResponse | None = None

    def send(self, path: str, body: bytes, request_id: str) -> http.client.HTTPResponse:
        self.connection.request("POST", self._connections.base_path + path, body=body,
                                headers={**self._connections.headers, "Content-Type": "application/json",
                                         "x-request-id": request_id})
        self.response = self.connection.getresponse()
        return self.response


class HttpModelServer:
    def __init__(self, connections: ModelServerConnections, wire: Wire, *, timeout: float, stall_timeout: float,
                 stream_timeout: float | None = None, connect_retries: int = CONNECT_RETRIES) -> None:
        """`connect_retries`: how often a refused connection is tried again (none in a pool, where
        another server is asked instead)."""
        self._connections, self._wire, self._connect_retries = connections, wire, connect_retries
        self._timeout = timeout  # an answer given in one piece, and an embedding
        self._stream_timeout = timeout if stream_timeout is None else stream_timeout
        self._stall = stall_timeout

    def chat(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
        think: bool = False, suffix: str | None = None,
    ) -> Completion:
        answer = self.stream(model=model, messages=messages, max_tokens=max_tokens, request_id=request_id,
                             options=options, tools=tools, answer_format=answer_format,
                             timeout=self._within(self._timeout, timeout), think=think, suffix=suffix)
        for _ in answer:
            pass
        assert answer.completion is not None, "an answer read to its end has its completion"
        return answer.completion

    def stream(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
        think: bool = False, suffix: str | None = None,
    ) -> _Streamed:
        """Each piece of the answer as it arrives, then its Completion, within the stream timeout, or
        `timeout` if the caller has less time. Closed early, the connection closes and the server stops."""
        body = self._wire.chat_body(model, messages, max_tokens, options, tools, answer_format, think=think,
                                    suffix=suffix)
        path, answer = self._wire.chat_path(suffix), Answer()
        return _Streamed(self._stream(path, body, model, request_id,
                                      Deadline(self._within(self._stream_timeout, timeout)), answer), answer)

    def _stream(self, path: str, body: bytes, model: str, request_id: str, deadline: Deadline,
                answer: Answer) -> Generator[Piece | Completion, None, None]:
        for attempt in range(self._connect_retries + 1):
            try:
                yield from self._exchange(path, body, model, request_id, deadline, answer)
                return
            except _Unreachable:  # raised before any piece: the stream can start afresh
                self._pause_before_retry(attempt, deadline)

    def embed(self, *, model: str, inputs: Sequence[str], dimensions: int | None, request_id: str,
              timeout: float | None = None) -> Embedding:
        body = self._wire.embed_body(model, inputs, dimensions)
        reply = self._retrying(lambda deadline: self._post(body, self._wire.embed_path, model, request_id, deadline),
                               self._within(self._timeout, timeout))
        return self._wire.embedding(reply, model, len(inputs))

    @staticmethod
    def _within(seconds: float, timeout: float | None) -> float:
        return seconds if timeout is None else min(timeout, seconds)

    def _retrying(self, exchange: Callable[[Deadline], T], seconds: float) -> T:
        """`exchange` within one deadline, sent again only if the server never saw it."""
        deadline = Deadline(seconds)
        for attempt in range(self._connect_retries + 1):
            try:
                return exchange(deadline)
            except _Unreachable:
                self._pause_before_retry(attempt, deadline)
        raise AssertionError("unreachable")

    def _pause_before_retry(self, attempt: int, deadline: Deadline) -> None:
        """Refused or never connected: the server never saw the request, so it is safe to send
        again, after a pause; UpstreamError once the retries or the time are spent."""
        pause = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * random.random()
        if attempt == self._connect_retries or deadline.remaining() <= pause:
            raise UpstreamError("The model server could not be reached.") from None
        logger.warning("model server unreachable; retrying", extra={"attempt": attempt + 1})
        time.sleep(pause)

    def _exchange(self, path: str, body: bytes, model: str, request_id: str, deadline: Deadline,
                  answer: Answer) -> Generator[Piece | Completion, None, None]:
        """`answer`: what arrives, kept from the first attempt on (none arrives before a retry)."""
        with self._lent(deadline) as lent:
            try:
                response = lent.send(path, body, request_id)
                if response.status != 200:
                    raise self._wire.status_error(response.status, response.read(), model)
                yield from self._wire.read(response, model, answer)
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
                    raise self._wire.status_error(response.status, data, model)
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
        lent = _Lent(connection, self._connections)
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


