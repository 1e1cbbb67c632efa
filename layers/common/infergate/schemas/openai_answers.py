"""OpenAI's answers, as InferGate gives them: a chat completion, whole or as chunks, embeddings,
and the models. A field with no value is left out, as OpenAI leaves it out, rather than sent
as null."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from infergate.schemas.base import Schema
from infergate.schemas.chat import TokenUsage


def _absent_if_none(**kwargs: Any) -> Any:
    """A field left out of the JSON when it has no value (OpenAI omits such fields rather than send null)."""
    return Field(None, exclude_if=lambda value: value is None, **kwargs)


class FunctionCallOut(Schema):
    name: str
    arguments: str  # a JSON object, as a string


class ToolCallOut(Schema):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(Schema):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = _absent_if_none()


class Choice(Schema):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatCompletion(Schema):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: TokenUsage


class FunctionDelta(Schema):
    name: str | None = _absent_if_none()
    arguments: str | None = _absent_if_none()


class ToolCallDelta(Schema):
    index: int
    id: str | None = _absent_if_none()
    type: Literal["function"] | None = _absent_if_none()
    function: FunctionDelta


class Delta(Schema):
    role: Literal["assistant"] | None = _absent_if_none()
    content: str | None = _absent_if_none()
    tool_calls: list[ToolCallDelta] | None = _absent_if_none()


class ChunkChoice(Schema):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: None = None


class ChatCompletionChunk(Schema):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: TokenUsage | None = _absent_if_none()


class EmbeddingObject(Schema):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # floats, or their float32 bytes in base64


class EmbeddingUsage(Schema):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Schema):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage


class ModelCard(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ollama"


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelCard]
