"""Ollama's HTTP API: `POST /api/chat` streamed as NDJSON with a hard deadline,
and `GET /api/tags`, cached briefly.

Streaming lets the gateway see an error Ollama reports after it has already
sent `200` (an `{"error": ...}` line), and lets it stop at the deadline
rather than after a single long read. The deadline covers the whole
exchange: connect, prompt evaluation and every token.

A call is retried only when nothing can have been generated: the
connection was refused or could not be made, so the request never reached
Ollama. Anything later (a reset, a timeout, a broken stream) may have
started a generation and is never retried.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from datetime import datetime

import httpx

from infergate.domain.ports import Completion, ModelEntry
from infergate.errors import InferGateError, ModelNotFound, ServiceUnavailable, UpstreamError, UpstreamTimeout
from infergate.domain.messages import Message
from infergate.observability import logger

CONNECT_RETRIES = 2
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0


class OllamaClient:
    def __init__(self, base_url: str, *, connect_timeout: float, timeout: float, http: httpx.Client | None = None) -> None:
        self._timeout = timeout
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def chat(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
    ) -> Completion:
        payload = {
            "model": model,
            "messages": [{"role": message.role, "content": message.content} for message in messages],
            "stream": True,
            "options": {**(options or {}), "num_predict": max_tokens},
        }
        deadline = _Deadline(self._timeout)
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                return self._exchange(payload, request_id, deadline)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # Refused or never connected: Ollama never saw the request, so it is safe to send again.
                pause = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * random.random()
                if attempt == CONNECT_RETRIES or deadline.remaining() <= pause:
                    raise UpstreamError("The model server could not be reached.") from None
                logger.warning("model server unreachable; retrying", extra={"attempt": attempt + 1})
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _exchange(self, payload: dict, request_id: str, deadline: _Deadline) -> Completion:
        model = payload["model"]
        try:
            with self._http.stream("POST", "/api/chat", json=payload, headers={"x-request-id": request_id}) as response:
                deadline.watch(response)
                if response.status_code != 200:
                    response.read()
                    raise _status_error(response, model)
                return _read_stream(response, model)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise
        except (InferGateError, httpx.HTTPError, ValueError) as error:
            if deadline.expired or isinstance(error, httpx.TimeoutException):
                raise UpstreamTimeout(f"The model server did not answer within {self._timeout:g} s.") from None
            if isinstance(error, InferGateError):
                raise
            raise UpstreamError("The model server broke off its answer.") from None
        finally:
            deadline.cancel()


class OllamaCatalog:
    """The server's models (`GET /api/tags`), kept for `ttl` seconds; a failure, for less."""

    def __init__(self, http: httpx.Client, *, ttl: float = 30.0, failure_ttl: float = 5.0) -> None:
        self._http = http
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
        try:
            response = self._http.get("/api/tags", timeout=httpx.Timeout(3.0, connect=1.0))
            response.raise_for_status()
            return [ModelEntry(m["name"], _timestamp(m.get("modified_at"))) for m in response.json().get("models", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            logger.warning("could not list the model server's models")
            return None


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _read_stream(response: httpx.Response, requested_model: str) -> Completion:
    pieces: list[str] = []
    for line in response.iter_lines():
        if not line.strip():
            continue
        chunk = json.loads(line)
        if "error" in chunk:
            raise UpstreamError(f"The model server failed while answering: {chunk['error']}")
        piece = chunk.get("message", {}).get("content", "")
        if piece:
            pieces.append(piece)
        if chunk.get("done"):
            return Completion(
                model=chunk.get("model") or requested_model,
                content="".join(pieces),
                prompt_tokens=chunk.get("prompt_eval_count"),
                completion_tokens=int(chunk.get("eval_count") or 0),
                done_reason=chunk.get("done_reason"),
                pieces=tuple(pieces),
            )
    raise UpstreamError("The model server ended its answer without a final message.")


def _status_error(response: httpx.Response, model: str) -> InferGateError:
    try:
        message = str(response.json().get("error", ""))
    except ValueError:
        message = ""
    if response.status_code == 404 and "not found" in message:
        return ModelNotFound.naming(model)
    if response.status_code == 503:
        return ServiceUnavailable("The model server is busy; retry shortly.", headers={"Retry-After": "1"})
    return UpstreamError(f"The model server answered {response.status_code}: {message or 'no detail'}")


class _Deadline:
    """Ends a streamed response at the deadline by shutting its socket.

    httpx's timeouts bound each read, not the whole exchange; shutting the
    socket down wakes the read that is blocked and ends the stream at once.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._started = time.monotonic()
        self._timer: threading.Timer | None = None
        self.expired = False

    def remaining(self) -> float:
        return self._seconds - (time.monotonic() - self._started)

    def watch(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        self._timer = threading.Timer(max(0.0, self.remaining()), self._expire, args=(sock,))
        self._timer.daemon = True
        self._timer.start()

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
