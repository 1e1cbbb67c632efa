"""InferGate's own chat API: POST /v1/chat's request, its answer, and a streamed answer's pieces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from infergate.schemas.base import Closed, Schema

MAX_PROMPT_CHARS = 200_000
MAX_OUTPUT_TOKENS = 4096


class ChatMessage(Closed):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class ChatRequest(Closed):
    """`{"prompt": "..."}` or `{"messages": [...]}`, plus optional `model`, `max_tokens` and
    `stream` (server-sent events: a `delta` event per piece of the answer, then `done`)."""

    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS)
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=256)
    model: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    stream: bool = False

    @model_validator(mode="after")
    def _one_of_prompt_or_messages(self) -> ChatRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of 'prompt' or 'messages'")
        if self.messages is not None and sum(len(m.content) for m in self.messages) > MAX_PROMPT_CHARS:
            raise ValueError(f"messages may hold at most {MAX_PROMPT_CHARS} characters in all")
        return self


class TokenUsage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(Schema):
    id: str
    model: str
    response: str
    usage: TokenUsage


class ChatDelta(Schema):
    """A piece of a streamed answer (the `delta` event of POST /v1/chat with `stream: true`)."""

    content: str
