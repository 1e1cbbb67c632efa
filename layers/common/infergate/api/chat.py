"""InferGate's own chat API (POST /v1/chat): its request as the domain's ChatTask, and the
answer as its schemas say it, whole or as server-sent events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from infergate.api.app import App, parse_body
from infergate.api.streaming import error_event, sse
from infergate.domain.errors import InferGateError

if TYPE_CHECKING:
    from infergate.domain.inference import ChatResult, ChatStream, ChatTask
    from infergate.schemas.chat import ChatRequest, ChatResponse, TokenUsage


def request(app: App) -> tuple[ChatTask, bool]:
    """The chat the body asks for, and whether it wants the answer streamed."""
    from infergate.schemas.chat import ChatRequest  # with the first chat, not at init

    body = parse_body(app, ChatRequest)
    return task(body), body.stream


def task(body: ChatRequest) -> ChatTask:
    """A prompt is one user message; messages are kept as sent."""
    # Imported with the first chat, not at init: the service that answers it imports them anyway.
    from infergate.domain.inference import ChatTask
    from infergate.domain.messages import Message

    if body.messages is not None:
        conversation = [Message(role=message.role, content=message.content) for message in body.messages]
    else:
        conversation = [Message(role="user", content=body.prompt or "")]
    return ChatTask(messages=conversation, model=body.model, max_tokens=body.max_tokens)


def usage(result: ChatResult) -> TokenUsage:
    from infergate.schemas.chat import TokenUsage

    return TokenUsage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                      total_tokens=result.total_tokens)


def response(result: ChatResult) -> ChatResponse:
    from infergate.schemas.chat import ChatResponse

    return ChatResponse(id=result.id, model=result.model, response=result.content, usage=usage(result))


def event_stream(stream: ChatStream) -> Iterator[str]:
    """A `delta` event per piece of the answer as the model produces it, then `done` with the
    whole answer and its usage (the body of a chat not streamed). An answer cut off ends with
    an `error` event instead, after what was generated."""
    from infergate.schemas.chat import ChatDelta

    try:
        for piece in stream:
            yield sse(ChatDelta(content=piece).model_dump_json(), event="delta")
    except InferGateError as failure:
        yield error_event(failure, event="error")
        return
    finally:
        stream.close()
    assert stream.result is not None
    yield sse(response(stream.result).model_dump_json(), event="done")
