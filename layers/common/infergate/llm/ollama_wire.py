"""Ollama's API (llm/client.py's Wire): `POST /api/chat` streamed as NDJSON, read a piece at a
time (a fill-in-the-middle, a prompt with a `suffix`, goes to `POST /api/generate`, which
streams the same way), `POST /api/embed`, and what each of its error statuses means.

With `think`, a model that can think streams its thoughts (`thinking`) before its answer;
one that cannot is refused with 400, which is ThinkingUnsupported here."""

from __future__ import annotations

import http.client
import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from infergate.domain.errors import (
    InferGateError,
    InvalidRequest,
    ModelNotFound,
    ModelServerBusy,
    ThinkingUnsupported,
    UpstreamError,
)
from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.model_server import Completion, Embedding, Piece, thought
from infergate.domain.tools import new_call_id
from infergate.llm.client import Answer, embedding_of


def chat_request(model: str, messages: list[Message], max_tokens: int, options: dict | None, tools: Sequence[Tool],
                 answer_format: str | Mapping[str, Any] | None, *, think: bool = False,
                 suffix: str | None = None) -> bytes:
    """The body of `POST /api/chat`, streamed, asking for at most `max_tokens`; with a `suffix`,
    that of `POST /api/generate`, the one message being the prompt."""
    request: dict[str, Any] = {"model": model, "stream": True, "options": {**(options or {}), "num_predict": max_tokens}}
    if suffix is not None:
        request |= {"prompt": messages[-1].content, "suffix": suffix}
    else:
        request["messages"] = [wire_message(message) for message in messages]
    if think:
        request["think"] = True
    if tools:
        request["tools"] = [{"type": "function", "function": {
            "name": tool.name, "description": tool.description, "parameters": tool.parameters}} for tool in tools]
    if answer_format is not None:
        request["format"] = answer_format
    return json.dumps(request).encode()


def wire_message(message: Message) -> dict[str, Any]:
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


def read_stream(response: http.client.HTTPResponse, requested_model: str,
                 answer: Answer) -> Generator[Piece | Completion, None, None]:
    """/api/chat's chunks (`message`) and /api/generate's (`response`, `thinking`) alike."""
    calls: list[ToolCall] = []
    for line in response:
        if not line.strip():
            continue
        chunk = json.loads(line)
        if "error" in chunk:
            raise UpstreamError(f"The model server failed while answering: {chunk['error']}")
        message = chunk.get("message") or chunk
        calls += _tool_calls(message)
        if message.get("thinking"):
            yield answer.thought(message["thinking"])
        piece = message.get("content") or chunk.get("response") or ""
        if piece:
            answer.add(piece)
            yield piece
        if chunk.get("done"):
            response.read()  # the end of the chunked body, so that the connection can be reused
            yield Completion(
                model=chunk.get("model") or requested_model,
                content=answer.said(),
                thinking=thought(answer.pieces),
                prompt_tokens=chunk.get("prompt_eval_count"),
                completion_tokens=int(chunk.get("eval_count") or 0),
                done_reason=chunk.get("done_reason"),
                pieces=tuple(answer.pieces),
                tool_calls=tuple(calls),
            )
            return
    raise UpstreamError("The model server ended its answer without a final message.")


def status_error(status: int, body: bytes, model: str) -> InferGateError:
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = ""
    if status == 404 and "not found" in message:
        return ModelNotFound.naming(model)
    if status == 400 and "does not support thinking" in message:
        return ThinkingUnsupported(f"The model '{model}' cannot think.", param="thinking")
    if status == 400:  # the request, not the server: e.g. tools offered to a model that cannot call them
        return InvalidRequest(f"The model server refused the request: {message or 'no detail'}")
    if status == 503:
        return ModelServerBusy("The model server is busy; retry shortly.", retry_after=1)
    return UpstreamError(f"The model server answered {status}: {message or 'no detail'}")


class OllamaWire:
    embed_path = "/api/embed"

    @staticmethod
    def chat_path(suffix: str | None) -> str:
        return "/api/chat" if suffix is None else "/api/generate"

    chat_body = staticmethod(chat_request)
    read = staticmethod(read_stream)
    status_error = staticmethod(status_error)

    @staticmethod
    def embed_body(model: str, inputs: Sequence[str], dimensions: int | None) -> bytes:
        # truncate: false, so that an input longer than the model's context is refused, not cut short.
        request: dict[str, Any] = {"model": model, "input": list(inputs), "truncate": False}
        if dimensions is not None:
            request["dimensions"] = dimensions
        return json.dumps(request).encode()

    @staticmethod
    def embedding(reply: dict, model: str, inputs: int) -> Embedding:
        return embedding_of(reply.get("embeddings"), reply.get("model") or model, inputs, reply.get("prompt_eval_count"))
