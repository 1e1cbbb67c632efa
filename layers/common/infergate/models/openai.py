"""OpenAI's Chat Completions and Models schemas, as far as InferGate serves them.

Requests accept the fields the official SDK sends and ignore ones InferGate
has no use for; features the model server cannot honour (several choices,
tools, images) are refused with 400 rather than silently dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from infergate.domain import messages
from infergate.models.base import Model
from infergate.models.chat import MAX_OUTPUT_TOKENS, MAX_PROMPT_CHARS, TokenUsage

if TYPE_CHECKING:
    from infergate.domain.chat import ChatTask


class TextPart(Model):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(Model):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(Model):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(Model):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    tools: list[dict] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[dict] | None) -> list[dict] | None:
        if tools:
            raise ValueError("tools are not supported")
        return tools

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences")
        return stop

    @model_validator(mode="after")
    def _bounded(self) -> ChatCompletionRequest:
        if sum(len(m.text()) for m in self.messages) > MAX_PROMPT_CHARS:
            raise ValueError(f"messages may hold at most {MAX_PROMPT_CHARS} characters in all")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def task(self) -> ChatTask:
        from infergate.domain.chat import ChatTask

        options: dict = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.top_p is not None:
            options["top_p"] = self.top_p
        if self.seed is not None:
            options["seed"] = self.seed
        if self.stop is not None:
            options["stop"] = [self.stop] if isinstance(self.stop, str) else self.stop
        conversation = [
            messages.Message(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in self.messages
        ]
        return ChatTask(messages=conversation, model=self.model, max_tokens=self.max_completion_tokens or self.max_tokens,
                        options=options)


class AssistantMessage(Model):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(Model):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(Model):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: TokenUsage
    system_fingerprint: None = None


class Delta(Model):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(Model):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(Model):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: TokenUsage | None = None
    system_fingerprint: None = None


class ModelCard(Model):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ollama"


class ModelList(Model):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorObject(Model):
    message: str
    type: str
    param: str | None = None
    code: str


class OpenAIErrorBody(Model):
    error: ErrorObject
