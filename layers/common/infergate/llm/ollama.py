"""Ollama's `POST /api/chat`, streamed as NDJSON, with a hard deadline.

Streaming lets the gateway see an error Ollama reports after it has already
sent `200` (an `{"error": ...}` line), and lets it stop at the deadline
rather than after a single long read. The deadline covers the whole
exchange: connect, prompt evaluation and every token.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from infergate.domain.ports import Completion
from infergate.errors import InferGateError, ModelNotFound, ServiceUnavailable, UpstreamError, UpstreamTimeout
from infergate.models.chat import ChatMessage


class OllamaClient:
    def __init__(self, base_url: str, *, connect_timeout: float, timeout: float, http: httpx.Client | None = None) -> None:
        self._timeout = timeout
        self._http = http or httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=8, keepalive_expiry=30),
        )

    def chat(self, *, model: str, messages: list[ChatMessage], max_tokens: int, request_id: str) -> Completion:
        payload = {
            "model": model,
            "messages": [message.model_dump() for message in messages],
            "stream": True,
            "options": {"num_predict": max_tokens},
        }
        deadline = _Deadline(self._timeout)
        try:
            with self._http.stream("POST", "/api/chat", json=payload, headers={"x-request-id": request_id}) as response:
                deadline.watch(response)
                if response.status_code != 200:
                    response.read()
                    raise _status_error(response, model)
                return _read_stream(response, model)
        except (InferGateError, httpx.HTTPError, ValueError) as error:
            if deadline.expired or isinstance(error, httpx.TimeoutException):
                raise UpstreamTimeout(f"The model server did not answer within {self._timeout:g} s.") from None
            if isinstance(error, InferGateError):
                raise
            raise UpstreamError("The model server could not be reached or broke off its answer.") from None
        finally:
            deadline.cancel()


def _read_stream(response: httpx.Response, requested_model: str) -> Completion:
    parts: list[str] = []
    for line in response.iter_lines():
        if not line.strip():
            continue
        chunk = json.loads(line)
        if "error" in chunk:
            raise UpstreamError(f"The model server failed while answering: {chunk['error']}")
        parts.append(chunk.get("message", {}).get("content", ""))
        if chunk.get("done"):
            return Completion(
                model=chunk.get("model") or requested_model,
                content="".join(parts),
                prompt_tokens=chunk.get("prompt_eval_count"),
                completion_tokens=int(chunk.get("eval_count") or 0),
                done_reason=chunk.get("done_reason"),
            )
    raise UpstreamError("The model server ended its answer without a final message.")


def _status_error(response: httpx.Response, model: str) -> InferGateError:
    try:
        message = str(response.json().get("error", ""))
    except ValueError:
        message = ""
    if response.status_code == 404 and "not found" in message:
        return ModelNotFound(f"Model '{model}' is not available on this gateway.")
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

    def watch(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        remaining = self._seconds - (time.monotonic() - self._started)
        self._timer = threading.Timer(max(0.0, remaining), self._expire, args=(sock,))
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
