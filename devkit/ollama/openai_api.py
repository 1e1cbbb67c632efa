"""The OpenAI-compatible side of the development model server, as vLLM, llama.cpp's
llama-server and Ollama itself serve it: GET /v1/models, POST /v1/chat/completions (streamed as
server-sent events, with usage when `stream_options.include_usage` asks, tools and
`response_format`; the counts so far in every chunk when `stream_options.continuous_usage_stats`
asks, as vLLM sends them, or `timings_per_token`, as llama-server does), POST /v1/completions (legacy completions: a `prompt`, and a `suffix` to fill
in the middle, as /api/generate answers them) and POST /v1/embeddings. The same engine answers as
on /api/chat, so the same conversation costs the same tokens either way; the same faults strike
chats (POST /_devkit/faults), and completions no more than /api/generate.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

from devkit.ollama.engines import Generation, ToolsUnsupported

# The error bodies and statuses such servers answer with.
OPENAI_ERRORS = {
    400: ("invalid_request_error", "bad request"),
    404: ("invalid_request_error", "The model `{model}` does not exist."),
    500: ("internal_server_error", "the engine died"),
    503: ("service_unavailable", "server busy, please try again"),
}


def messages_of(openai_messages: list[dict]) -> list[dict]:
    """OpenAI's messages as the engine reads them (text content, Ollama's tool calls)."""
    messages = []
    for message in openai_messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
        converted: dict[str, Any] = {"role": message.get("role"), "content": content or ""}
        if message.get("tool_calls"):
            converted["tool_calls"] = [{"function": {"name": call["function"]["name"],
                                                     "arguments": json.loads(call["function"]["arguments"] or "{}")}}
                                       for call in message["tool_calls"]]
        messages.append(converted)
    return messages


def format_of(response_format: dict | None) -> Any:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_object":
        return "json"
    return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}


class OpenAIRoutes:
    """Mixed into the model server's request handler, whose helpers it uses."""

    def _openai_error(self, status: int, model: str = "", message: str | None = None) -> None:
        kind, text = OPENAI_ERRORS.get(status, ("api_error", "error"))
        self._send_json(status, {"error": {"message": message or text.format(model=model), "type": kind,
                                           "param": None, "code": None}})

    def _openai_models(self) -> None:
        self._send_json(200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "devkit"} for name in self.server.models]})

    def _openai_embeddings(self) -> None:
        from devkit.ollama.server import EMBEDDING_DIMENSIONS, embedding_of

        body = self._read_json()
        if body is None:
            return
        if body.get("model") not in self.server.models:
            return self._openai_error(404, body.get("model", ""))
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        tokens = sum(len(text.split()) or 1 for text in texts)
        self._send_json(200, {"object": "list", "model": body["model"],
                              "data": [{"object": "embedding", "index": index, "embedding": embedding_of(text, dimensions)}
                                       for index, text in enumerate(texts)],
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _openai_request(self) -> tuple[dict, str] | None:
        """The body and the model it names, or None once an error has answered for them."""
        body = self._read_json()
        if body is None:
            return None
        model = body.get("model")
        if model not in self.server.models:
            self._openai_error(404, model or "")
            return None
        return body, model

    def _in_a_slot(self, model: str, answer) -> None:
        """`answer()` in one of the model's slots, or 503 when its line is full."""
        try:
            with self.server.capacity.slot(model):
                answer()
        except self.server.Busy:
            self._openai_error(503)

    def _openai_chat(self) -> None:
        if (asked := self._openai_request()) is None:
            return
        body, model = asked
        fault = self.server.take_fault()
        if fault and self._misbehave(fault, model, openai=True):
            return
        self._in_a_slot(model, lambda: self._openai_answer(body, model, fault))

    def _openai_completion(self) -> None:
        if (asked := self._openai_request()) is None:
            return
        body, model = asked
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):  # Ollama reads one string, as its Go struct says
            return self._openai_error(400, model, "json: cannot unmarshal {} into Go struct field "
                                      "CompletionRequest.prompt of type string".format(_json_kind(prompt)))
        if refusal := self._refusal(model, suffix=body.get("suffix")):
            return self._openai_error(400, model, refusal)
        self._in_a_slot(model, lambda: self._openai_completion_answer(body, model))

    def _openai_completion_answer(self, body: dict, model: str) -> None:
        """What /api/generate answers for the same prompt and suffix; an empty prompt only loads
        the model there, so here it is an empty text that finishes with "load"."""
        prompt = body.get("prompt") or ""
        generation = self.server.engine.generate(
            [{"role": "user", "content": prompt}], num_predict=body.get("max_tokens"), options={},
            suffix=body.get("suffix") or None) if prompt else Generation(iter(()), 0, done_reason="load")
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._openai_completion_stream(completion_id, model, generation, include_usage)
        self._send_json(200, _text_completion(completion_id, model, "".join(generation.pieces), generation.done_reason,
                                              usage=_usage(generation)))

    def _openai_completion_stream(self, completion_id: str, model: str, generation: Generation,
                                  include_usage: bool) -> None:
        self._start_events()
        for text in generation.pieces:
            self._event(_text_completion(completion_id, model, text))
        self._event(_text_completion(completion_id, model, "", generation.done_reason))
        if include_usage:
            self._event({**_text_completion(completion_id, model, ""), "choices": [], "usage": _usage(generation)})
        self._event("[DONE]")
        self._end_events()

    def _openai_answer(self, body: dict, model: str, fault: dict | None) -> None:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        try:
            generation = self.server.engine.generate(
                messages_of(body.get("messages") or []), num_predict=limit, options={}, tools=body.get("tools"),
                answer_format=format_of(body.get("response_format")))
        except ToolsUnsupported:
            return self._openai_error(400, model, f"{model} does not support tools")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            return self._openai_stream(completion_id, model, generation, _counting(body), fault)
        text = "".join(generation.pieces)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if generation.tool_calls else "")}
        if generation.tool_calls:
            message["tool_calls"] = _calls(generation)
        self._send_json(200, {"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                              "model": model, "choices": [{"index": 0, "message": message,
                                                           "finish_reason": _finish(generation)}],
                              "usage": _usage(generation)})

    def _openai_stream(self, completion_id: str, model: str, generation: Generation, counting: frozenset[str],
                       fault: dict | None) -> None:
        """`counting`: what the request asked to be told of the counts (_counting)."""
        self._start_events()
        mode = fault.get("mode") if fault else None
        breaks_after = int(fault.get("after_pieces", 1)) if mode in ("break", "drop", "stall") else None
        generated = 0

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> None:
            self._event({"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                         **_so_far(generation.prompt_tokens, generated, counting), **extra})

        chunk({"role": "assistant", "content": ""})
        for index, text in enumerate(generation.pieces):
            if mode == "trickle":
                time.sleep(float(fault.get("piece_seconds", 0.1)))
            if breaks_after is not None and index == breaks_after:
                if mode == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if mode == "stall":
                    time.sleep(float(fault.get("seconds", 60)))
                else:
                    self._event({"error": {"message": "the engine died mid-answer", "type": "internal_server_error"}})
                    return self._end_events()
            generated += 1
            chunk({"content": text})
        for index, call in enumerate(_calls(generation)):
            chunk({"tool_calls": [{"index": index, **call}]})
        chunk({}, _finish(generation))
        if "include_usage" in counting:
            self._event({"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [], "usage": _usage(generation)})
        self._event("[DONE]")
        self._end_events()

    def _start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _event(self, data: Any) -> None:
        payload = (data if isinstance(data, str) else json.dumps(data)).encode()
        event = b"data: " + payload + b"\n\n"
        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        self.wfile.flush()

    def _end_events(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _text_completion(completion_id: str, model: str, text: str, finish: str | None = None, **extra: Any) -> dict:
    """A legacy completion, or a chunk of one: the same shape, `text` its piece."""
    return {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"text": text, "index": 0, "finish_reason": finish}], **extra}


def _json_kind(value: Any) -> str:
    """What Go's encoding/json calls a JSON value's kind in its errors."""
    return {list: "array", dict: "object", bool: "bool"}.get(type(value), "number")


def _calls(generation: Generation) -> list[dict]:
    return [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
             "function": {"name": call["function"]["name"], "arguments": json.dumps(call["function"]["arguments"])}}
            for call in generation.tool_calls]


def _finish(generation: Generation) -> str:
    return "tool_calls" if generation.tool_calls else generation.done_reason


def _counting(body: dict) -> frozenset[str]:
    """What a streamed chat asks to be told of its counts: `include_usage` (at the end),
    `continuous_usage_stats` (vLLM: in every chunk), `timings_per_token` (llama-server: its timings
    in every chunk)."""
    options = body.get("stream_options") or {}
    asked = {name for name in ("include_usage", "continuous_usage_stats") if options.get(name)}
    return frozenset(asked | ({"timings_per_token"} if body.get("timings_per_token") else set()))


def _so_far(prompt_tokens: int, generated: int, counting: frozenset[str]) -> dict:
    """A chunk's counts so far, as the request asked for them."""
    extra: dict[str, Any] = {}
    if {"include_usage", "continuous_usage_stats"} <= counting:
        extra["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
                          "total_tokens": prompt_tokens + generated}
    if "timings_per_token" in counting:  # llama-server: prompt_n were evaluated, cache_n came from its cache
        extra["timings"] = {"prompt_n": prompt_tokens, "cache_n": 0, "predicted_n": generated}
    return extra


def _usage(generation: Generation) -> dict:
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens}
