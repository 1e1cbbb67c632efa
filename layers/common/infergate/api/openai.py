"""Shapes results and errors the way OpenAI's API does, for /v1/chat/completions, /v1/embeddings
and /v1/models."""

from __future__ import annotations

import base64
import json
import struct
from typing import TYPE_CHECKING

from infergate.api.streaming import error_event, sse
from infergate.domain.ports import ModelEntry
from infergate.errors import InferGateError
from infergate.models.chat import TokenUsage
from infergate.models.openai import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    EmbeddingList,
    EmbeddingObject,
    EmbeddingUsage,
    FunctionCallOut,
    FunctionDelta,
    ModelCard,
    ModelList,
    ToolCallDelta,
    ToolCallOut,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from infergate.domain.chat import ChatResult, ChatStream, EmbeddingResult



def _finish_reason(result: ChatResult) -> str:
    if result.tool_calls:
        return "tool_calls"
    return "length" if result.done_reason == "length" else "stop"


def _calls(result: ChatResult) -> list[ToolCallOut]:
    return [ToolCallOut(id=call.id, function=FunctionCallOut(name=call.name, arguments=json.dumps(dict(call.arguments))))
            for call in result.tool_calls]


def completion(result: ChatResult) -> ChatCompletion:
    message = AssistantMessage(content=result.content or None, tool_calls=_calls(result) or None) if result.tool_calls \
        else AssistantMessage(content=result.content)
    return ChatCompletion(
        id=f"chatcmpl-{result.id}",
        created=int(result.created.timestamp()),
        model=result.model,
        choices=[Choice(message=message, finish_reason=_finish_reason(result))],
        usage=TokenUsage.of(result),
    )


def event_stream(stream: ChatStream, *, include_usage: bool) -> Iterator[str]:
    """The answer as OpenAI streams it, as the model produces it: a chunk per piece of content,
    then the tool calls, the finish reason, the usage when asked for, and `data: [DONE]`. An
    answer cut off ends with an error event instead, after what was generated."""
    chunk_id, created = f"chatcmpl-{stream.id}", int(stream.created.timestamp())

    def chunk(delta: Delta, finish_reason: str | None = None, *, usage: TokenUsage | None = None, choices: bool = True) -> str:
        body = ChatCompletionChunk(
            id=chunk_id, created=created, model=stream.model, usage=usage,
            choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)] if choices else [],
        )
        return sse(body.model_dump_json())

    try:
        yield chunk(Delta(role="assistant", content=""))
        for piece in stream:
            yield chunk(Delta(content=piece))
    except InferGateError as failure:
        yield error_event(failure)
        return
    finally:
        stream.close()
    result = stream.result
    assert result is not None
    for index, call in enumerate(_calls(result)):  # each call as OpenAI streams one: its name, then its arguments
        yield chunk(Delta(tool_calls=[ToolCallDelta(
            index=index, id=call.id, type="function", function=FunctionDelta(name=call.function.name, arguments=""))]))
        yield chunk(Delta(tool_calls=[ToolCallDelta(index=index, function=FunctionDelta(arguments=call.function.arguments))]))
    yield chunk(Delta(), _finish_reason(result))
    if include_usage:
        yield chunk(Delta(), usage=TokenUsage.of(result), choices=False)
    yield sse("[DONE]")


def embedding_list(result: EmbeddingResult, *, encoding_format: str) -> EmbeddingList:
    def encoded(vector: tuple[float, ...]) -> list[float] | str:
        if encoding_format == "base64":  # float32, little-endian, as OpenAI's SDK decodes it
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return list(vector)

    return EmbeddingList(
        data=[EmbeddingObject(index=index, embedding=encoded(vector)) for index, vector in enumerate(result.vectors)],
        model=result.model, usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens))


def model_card(entry: ModelEntry) -> ModelCard:
    return ModelCard(id=entry.name, created=int(entry.modified_at.timestamp()) if entry.modified_at else 0)


def model_list(models: list[ModelEntry]) -> ModelList:
    return ModelList(data=[model_card(entry) for entry in models])
