"""OpenAI's API as a model server speaks it (llm/client.py's Wire), for any OpenAI-compatible
server: vLLM, llama.cpp's llama-server, SGLang, TGI. `POST /v1/chat/completions` streamed as
server-sent events, its usage asked for with `stream_options.include_usage`; `POST
/v1/embeddings`; and what each error status means.

A server that sends no usage (one that ignores `include_usage`) is charged a token per piece
of the answer and the prompt's held bound, as an answer cut off is. vLLM and llama-server can
say the prompt's count as they answer (vLLM's `stream_options.continuous_usage_stats`,
llama-server's `timings_per_token`): a server configured as one of them is asked to, so that an
answer cut off is charged the prompt's real count. Other servers are not sent these fields,
which a strict server (OpenAI's own) refuses.

A fill-in-the-middle (a prompt and a `suffix`) goes to `POST /v1/completions`, which
llama-server and vLLM serve. OpenAI's API has no way to ask a model to think: `think` is
ThinkingUnsupported before anything is sent, so the chat is asked without it.
"""

from __future__ import annotations

import base64
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
from infergate.domain.model_server import Completion, Embedding
from infergate.domain.pool import LLAMA_CPP, OPENAI, VLLM
from infergate.domain.tools import new_call_id
from infergate.llm.client import Answer, embedding_of

# An image's type, by its first bytes: OpenAI's API wants it in a data: URL.
_IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


class OpenAIWire:
    embed_path = "/v1/embeddings"

    def __init__(self, kind: str = OPENAI) -> None:
        """`kind`: the server's (domain/pool.py), which says how it can count as it answers."""
        self._counting = _COUNTING.get(kind, {})

    @staticmethod
    def chat_path(suffix: str | None) -> str:
        return "/v1/chat/completions" if suffix is None else "/v1/completions"

    def chat_body(self, model: str, messages: list[Message], max_tokens: int, options: dict | None,
                  tools: Sequence[Tool], answer_format: str | Mapping[str, Any] | None, *, think: bool = False,
                  suffix: str | None = None) -> bytes:
        if think:
            raise ThinkingUnsupported(f"The model '{model}' cannot be asked to think over OpenAI's API.", param="thinking")
        # The options are OpenAI's own sampling fields (temperature, top_p, seed, stop, penalties).
        request: dict[str, Any] = {**(options or {}), "model": model, "stream": True,
                                   "stream_options": {"include_usage": True}, "max_tokens": max_tokens}
        for field, value in self._counting.items():
            request[field] = {**request[field], **value} if isinstance(value, dict) else value
        if suffix is not None:
            request |= {"prompt": messages[-1].content, "suffix": suffix}
        else:
            request["messages"] = [_message(m) for m in messages]
        if tools:
            request["tools"] = [{"type": "function", "function": {
                "name": tool.name, "description": tool.description, "parameters": tool.parameters}} for tool in tools]
        if answer_format == "json":
            request["response_format"] = {"type": "json_object"}
        elif answer_format is not None:
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "answer", "schema": answer_format}}
        return json.dumps(request).encode()

    @staticmethod
    def read(response: http.client.HTTPResponse, model: str,
             answer: Answer) -> Generator[str | Completion, None, None]:
        calls: dict[int, dict[str, str]] = {}
        usage: dict = {}
        finish, served = None, model
        for line in response:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                response.read()  # the end of the body, so that the connection can be reused
                yield Completion(model=served, content=answer.said(), pieces=tuple(answer.pieces),
                                 prompt_tokens=usage.get("prompt_tokens"),
                                 completion_tokens=int(usage.get("completion_tokens") or len(answer.pieces)),
                                 done_reason="length" if finish == "length" else "stop", tool_calls=_calls(calls))
                return
            chunk = json.loads(data)
            if "error" in chunk:
                raise UpstreamError(f"The model server failed while answering: {_message_of(chunk)}")
            served, usage = chunk.get("model") or served, chunk.get("usage") or usage
            answer.prompt_tokens = _prompt_so_far(chunk, answer.prompt_tokens)
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                finish = choice.get("finish_reason") or finish
                for call in delta.get("tool_calls") or []:
                    _add_call(calls, call)
                text = delta.get("content") or choice.get("text")  # /v1/completions' choices carry text
                if text:
                    answer.add(text)
                    yield text
        raise UpstreamError("The model server ended its answer without its end ([DONE]).")

    @staticmethod
    def embed_body(model: str, inputs: Sequence[str], dimensions: int | None) -> bytes:
        request: dict[str, Any] = {"model": model, "input": list(inputs), "encoding_format": "float"}
        if dimensions is not None:
            request["dimensions"] = dimensions
        return json.dumps(request).encode()

    @staticmethod
    def embedding(reply: dict, model: str, inputs: int) -> Embedding:
        data = reply.get("data")
        vectors = [item.get("embedding") for item in sorted(data, key=lambda item: item.get("index", 0))] if (
            isinstance(data, list) and all(isinstance(item, dict) for item in data)) else None
        return embedding_of(vectors, reply.get("model") or model, inputs, (reply.get("usage") or {}).get("prompt_tokens"))

    @staticmethod
    def status_error(status: int, body: bytes, model: str) -> InferGateError:
        try:
            message = _message_of(json.loads(body))
        except (ValueError, AttributeError):
            message = ""
        if status == 404:
            return ModelNotFound.naming(model)
        if status in (400, 422):  # the request, not the server
            return InvalidRequest(f"The model server refused the request: {message or 'no detail'}")
        if status in (429, 503):
            return ModelServerBusy("The model server is busy; retry shortly.", retry_after=1)
        if status in (401, 403):
            return UpstreamError("The model server refused the gateway's credentials (MODEL_SERVERS' api_key).")
        return UpstreamError(f"The model server answered {status}: {message or 'no detail'}")


# What a server of each kind is sent so that it says the prompt's count as it answers.
_COUNTING: dict[str, dict[str, Any]] = {
    VLLM: {"stream_options": {"continuous_usage_stats": True}},
    LLAMA_CPP: {"timings_per_token": True},
}


def _prompt_so_far(chunk: dict, known: int | None) -> int | None:
    """The prompt's tokens as a chunk reports them: its usage (vLLM, and any server's last chunk),
    or llama-server's timings (tokens evaluated, and those its cache already held)."""
    usage, timings = chunk.get("usage"), chunk.get("timings")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return usage["prompt_tokens"]
    if isinstance(timings, dict) and isinstance(timings.get("prompt_n"), int):
        return timings["prompt_n"] + int(timings.get("cache_n") or 0)
    return known


def _message(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        wire["content"] = [{"type": "text", "text": message.content}, *(
            {"type": "image_url", "image_url": {"url": _data_url(image)}} for image in message.images)]
    if message.tool_calls:
        wire["tool_calls"] = [{"id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))}}
                              for call in message.tool_calls]
    if message.role == "tool":
        wire["tool_call_id"] = message.tool_call_id or f"call_{message.tool_name or 'tool'}"
    return wire


def _data_url(image: str) -> str:
    head = base64.b64decode(image[:16] + "=" * (-len(image[:16]) % 4), validate=False)
    kind = next((kind for magic, kind in _IMAGE_TYPES.items() if head.startswith(magic)), "image/png")
    return f"data:{kind};base64,{image}"


def _add_call(calls: dict[int, dict[str, str]], delta: dict) -> None:
    """A streamed tool call's piece: its id and name come first, its arguments in fragments."""
    call = calls.setdefault(int(delta.get("index") or 0), {"id": "", "name": "", "arguments": ""})
    function = delta.get("function") or {}
    call["id"] = delta.get("id") or call["id"]
    call["name"] = function.get("name") or call["name"]
    call["arguments"] += function.get("arguments") or ""


def _calls(calls: dict[int, dict[str, str]]) -> tuple[ToolCall, ...]:
    made = []
    for _, call in sorted(calls.items()):
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = None
        if not call["name"] or not isinstance(arguments, dict):
            # What the model wrote, not a sign that the server is unwell.
            raise UpstreamError("The model made a tool call without a name or with arguments that are not an object.",
                                server_unwell=False)
        made.append(ToolCall(call["id"] or new_call_id(), call["name"], arguments))
    return tuple(made)


def _message_of(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return str(error or "")
