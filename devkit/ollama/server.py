"""The HTTP side of the Ollama-compatible server.

Besides Ollama's API it has two routes of its own for tests: GET
/_devkit/requests (what arrived lately) and POST /_devkit/faults, which
makes the next `count` chats misbehave: {"mode": "status", "status": 404|500|503}
answers with Ollama's error body; "hang" never answers (for `seconds`);
"reset" drops the connection before answering; "break" streams
`after_pieces` pieces and then an {"error": ...} line, as Ollama reports a
failure after 200; "drop" streams them and then cuts the connection;
"stall" streams them and then goes silent for `seconds` before going on;
"trickle" sends every piece `piece_seconds` after the last, as a slow model does.

What a model can do is its engine's to say (ModelInfo.capabilities): asked to think (`think`)
or to fill in the middle (`suffix`, on /api/generate) beyond that, it answers 400 with Ollama's
words, checked in Ollama's order. A thinking model streams its thoughts (`message.thinking`,
or `thinking` on /api/generate) before its answer. Unlike Ollama, a model that can think thinks
only when asked to: `think` absent is `think: false`, so what tests pin down does not change.

It serves Ollama's OpenAI-compatible routes too (devkit/ollama/openai_api.py), and behaves as
one server of a pool does (devkit/ollama/capacity.py): a number of slots, a queue, models that
take a moment to load, GET /api/ps; GET /_devkit/stats says what it saw (POST it to start
counting afresh). With an API key, every route wants `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from devkit import httpserver
from devkit.ollama.capacity import Busy, Capacity
from devkit.ollama.engines import Generation, ToolsUnsupported
from devkit.ollama.openai_api import OpenAIRoutes

VERSION = "0.9.3"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


EMBEDDING_DIMENSIONS = 8


def embedding_of(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends on the text alone: the same text, the same embedding."""
    digest = hashlib.sha256(text.encode()).digest() * (dimensions // 32 + 1)
    raw = [byte - 127.5 for byte in digest[:dimensions]]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [round(value / norm, 6) for value in raw]


# Ollama's own words for the failures it can answer with.
ERROR_MESSAGES = {
    404: 'model "{model}" not found, try pulling it first',
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}

# `think`'s values besides true and false (api.ThinkValue).
THINK_LEVELS = ("high", "medium", "low", "max")


def full_name(model: str) -> str:
    """The name some of Ollama's errors give a model (model.ParseName): host, namespace and tag filled in."""
    parts = model.split("/")
    if ":" not in parts[-1]:
        parts[-1] += ":latest"
    return "/".join(["registry.ollama.ai", "library"][:max(0, 3 - len(parts))] + parts)


def think_error(think: Any) -> str | None:
    """Ollama's 400 for a `think` it cannot read (api.ThinkValue.UnmarshalJSON); None if it can."""
    if think is None or isinstance(think, bool) or think in THINK_LEVELS:
        return None
    if isinstance(think, str):
        return f'invalid think value: {json.dumps(think)} (must be "high", "medium", "low", "max", true, or false)'
    return 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'


def thinks(think: Any) -> bool:
    """Whether `think` asks for thoughts (api.ThinkValue.Bool): true, or any level."""
    return think is True or think in THINK_LEVELS


class OllamaServer(httpserver.Server):
    daemon_threads = True
    Busy = Busy

    def __init__(self, address: tuple[str, int], engine: Any, models: list[str], *, capacity: Capacity | None = None,
                 api_key: str = "") -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.models = models
        self.capacity = capacity or Capacity()
        self.api_key = api_key
        # What arrived lately, so tests can see what the gateway sent (ids, options).
        self.recent: deque[dict] = deque(maxlen=200)
        self.recent_lock = threading.Lock()
        # Misbehaviour on cue for the next `count` chats (POST /_devkit/faults).
        self.fault: dict = {}
        self.fault_lock = threading.Lock()

    def take_fault(self) -> dict | None:
        with self.fault_lock:
            if self.fault.get("count", 0) <= 0:
                return None
            self.fault["count"] -= 1
            return dict(self.fault)


class _Handler(OpenAIRoutes, httpserver.Handler):
    server: OllamaServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # -- plumbing ------------------------------------------------------------
    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _chunk(self, obj: Any) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _read_json(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            self._error(400, "missing request body")
            return None
        try:
            body = json.loads(raw)
        except ValueError as error:
            self._error(400, f"invalid character in request body: {error}")
            return None
        if not isinstance(body, dict):
            self._error(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
            return None
        with self.server.recent_lock:
            self.server.recent.append(
                {"path": self.path, "x-request-id": self.headers.get("x-request-id"), "body": body, "at": time.time(),
                 "client_port": self.client_address[1]}
            )
        return body

    def _authorised(self) -> bool:
        if not self.server.api_key or self.path.startswith("/_devkit/"):
            return True
        if self.headers.get("Authorization", "") == f"Bearer {self.server.api_key}":
            return True
        self._error(401, "unauthorized")
        return False

    # -- routes --------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self._send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [self._tag(name) for name in self.server.models]})
        elif self.path == "/api/ps":
            self._send_json(200, {"models": [{**self._tag(name), "expires_at": _now(), "size_vram": 0,
                                              "context_length": 8192}
                                             for name in self.server.models if self.server.capacity.is_loaded(name)]})
        elif self.path == "/v1/models":
            self._openai_models()
        elif self.path == "/_devkit/stats":
            self._send_json(200, self.server.capacity.stats())
        elif self.path == "/_devkit/requests":
            with self.server.recent_lock:
                self._send_json(200, list(self.server.recent))
        else:
            self._error(404, "404 page not found")

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        if self.path == "/_devkit/stats":
            self.server.capacity.reset_stats()
            self._send_json(200, self.server.capacity.stats())
        elif self.path == "/v1/chat/completions":
            self._openai_chat()
        elif self.path == "/v1/completions":
            self._openai_completion()
        elif self.path == "/v1/embeddings":
            self._openai_embeddings()
        elif self.path == "/_devkit/faults":
            length = int(self.headers.get("Content-Length") or 0)
            fault = json.loads(self.rfile.read(length) or b"{}")
            with self.server.fault_lock:
                self.server.fault = {"count": 1, **fault}
            self._send_json(200, self.server.fault)
        elif self.path == "/api/chat":
            self._generate(chat=True)
        elif self.path == "/api/generate":
            self._generate(chat=False)
        elif self.path == "/api/embed":
            self._embed()
        else:
            self._error(404, "404 page not found")

    def _tag(self, name: str) -> dict:
        info = self.server.engine.info(name)
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": info.size,
            "digest": info.digest,
            "details": {
                "format": "gguf",
                "family": info.family,
                "families": [info.family],
                "parameter_size": info.parameter_size,
                "quantization_level": info.quantization_level,
            },
        }

    def _generate(self, *, chat: bool) -> None:
        body = self._read_json()
        if body is None:
            return
        if unreadable := think_error(body.get("think")):
            return self._error(400, unreadable)
        model = body.get("model")
        if not model:
            return self._error(400, "model is required")
        if model not in self.server.models:
            return self._error(404, f'model "{model}" not found, try pulling it first')
        if refusal := self._refusal(model, think=body.get("think"), suffix=None if chat else body.get("suffix")):
            return self._error(400, refusal)
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return self._error(400, "messages must be a list of objects")
        else:
            messages = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + [
                {"role": "user", "content": str(body.get("prompt", ""))}
            ]
        options = body.get("options") or {}
        num_predict = options.get("num_predict")
        fault = self.server.take_fault() if chat else None
        if fault and self._misbehave(fault, model):
            return
        try:
            with self.server.capacity.slot(model):
                self._answer(body, model, chat, messages, num_predict, options, fault)
        except Busy:
            self._error(503, ERROR_MESSAGES[503])

    def _refusal(self, model: str, *, think: Any = None, suffix: Any = None) -> str | None:
        """Ollama's 400 for what the model cannot do: thinking (checked first, in its own words),
        then filling in the middle (scheduleRunner's capability check, naming the model in full)."""
        capabilities = self.server.engine.info(model).capabilities
        if thinks(think) and "thinking" not in capabilities:
            return f"{json.dumps(model, ensure_ascii=False)} does not support thinking"
        if suffix and "insert" not in capabilities:
            return f"{full_name(model)} does not support insert"
        return None

    def _answer(self, body: dict, model: str, chat: bool, messages: list, num_predict: Any, options: dict,
                fault: dict | None) -> None:
        started = time.perf_counter_ns()
        if not chat and not body.get("prompt"):  # Ollama only loads the model
            return self._send_json(200, {"model": model, "created_at": _now(), "response": "", "done": True,
                                         "done_reason": "load"})
        try:
            generation = self.server.engine.generate(
                messages, num_predict=num_predict, options=options, tools=body.get("tools"),
                answer_format=body.get("format"), think=thinks(body.get("think")),
                suffix=None if chat else body.get("suffix") or None)
        except ToolsUnsupported:
            return self._error(400, f"{full_name(model)} does not support tools")
        raw = bool(body.get("raw"))
        if body.get("stream", True):
            self._stream(model, chat, generation, started, fault, raw=raw)
        else:
            thought = "".join(generation.thinking)
            final = self._final(model, chat, generation, started, "".join(generation.pieces), thought, raw=raw)
            if chat and generation.tool_calls:
                final["message"]["tool_calls"] = generation.tool_calls
            self._send_json(200, final)

    def _embed(self) -> None:
        body = self._read_json()
        if body is None:
            return
        model = body.get("model")
        if model not in self.server.models:
            return self._error(404, f'model "{model}" not found, try pulling it first')
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            return self._error(400, "invalid input type")
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        self._send_json(200, {"model": model, "embeddings": [embedding_of(text, dimensions) for text in texts],
                              "prompt_eval_count": sum(len(text.split()) or 1 for text in texts)})

    def _piece(self, model: str, chat: bool, text: str, thought: str = "") -> dict:
        """One chunk of the answer, or of its thoughts (`thinking`, left out when empty, as Ollama does)."""
        content: dict[str, Any] = {"role": "assistant", "content": text} if chat else {"response": text}
        if thought:
            content["thinking"] = thought
        return {"model": model, "created_at": _now(), **({"message": content} if chat else content), "done": False}

    def _final(self, model: str, chat: bool, generation: Generation, started: int, text: str, thought: str = "", *,
               raw: bool = False) -> dict:
        final = self._piece(model, chat, text, thought)
        final.update(
            done=True,
            done_reason=generation.done_reason,
            total_duration=time.perf_counter_ns() - started,
            load_duration=generation.load_ns,
            prompt_eval_count=generation.prompt_tokens,
            prompt_eval_duration=generation.prompt_ns,
            eval_count=generation.completion_tokens,
            eval_duration=generation.eval_ns,
        )
        if not chat and not raw:  # Ollama tokenises the prompt and the answer for the next turn
            final["context"] = generation.context()
        return final

    def _misbehave(self, fault: dict, model: str, *, openai: bool = False) -> bool:
        """Fail before answering, as asked; False for faults that strike mid-stream."""
        mode = fault.get("mode")
        if mode == "status":
            status = int(fault.get("status", 500))
            if openai:
                self._openai_error(status, model)
            else:
                self._error(status, ERROR_MESSAGES.get(status, "internal error").format(model=model))
        elif mode == "hang":
            time.sleep(float(fault.get("seconds", 60)))
            self.close_connection = True
        elif mode == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            return False
        return True

    def _stream(self, model: str, chat: bool, generation: Generation, started: int, fault: dict | None = None, *,
                raw: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        mode = fault.get("mode") if fault else None
        breaks_after = int(fault.get("after_pieces", 1)) if mode in ("break", "drop", "stall") else None
        try:
            for index, (thought, text) in enumerate(generation.parts()):
                if mode == "trickle":
                    time.sleep(float(fault.get("piece_seconds", 0.1)))
                if breaks_after is not None and index == breaks_after:
                    if mode == "drop":  # the connection ends mid-answer, no final chunk
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    if mode == "stall":
                        time.sleep(float(fault.get("seconds", 60)))
                    else:
                        raise RuntimeError("llama runner process no longer running: exit status 2")
                self._chunk(self._piece(model, chat, text, thought))
            if generation.tool_calls:  # as Ollama streams them: in a message of their own, before the end
                self._chunk({**self._piece(model, chat, ""), "message": {
                    "role": "assistant", "content": "", "tool_calls": generation.tool_calls}})
            self._chunk(self._final(model, chat, generation, started, "", raw=raw))
        except Exception as error:  # noqa: BLE001 - Ollama reports a failure after 200 as an error line
            self._chunk({"error": str(error)})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
