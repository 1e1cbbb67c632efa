"""OpenAI's legacy Completions (POST /v1/completions), as editors' autocomplete sends it: a
prompt, and for fill-in-the-middle a `suffix` (Ollama's own `suffix`). What it answers is here
too: a text completion, whole or as chunks of the same shape.

Several choices, echoing the prompt, best-of and log probabilities are refused with 400 naming
the field, unless the request asks for nothing of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from infergate.schemas.base import Closed, Schema, without_unsupported
from infergate.schemas.chat import MAX_OUTPUT_TOKENS, MAX_PROMPT_CHARS, TokenUsage
from infergate.schemas.openai import StreamOptions

# OpenAI's default, for a request that names no max_tokens.
DEFAULT_MAX_TOKENS = 16
# Fields InferGate cannot honour, and what each may say to ask for nothing (null always may).
UNSUPPORTED = {
    "n": ("only n=1 is supported", lambda value: type(value) is int and value == 1),
    "best_of": ("only best_of=1 is supported", lambda value: type(value) is int and value == 1),
    "echo": ("the prompt is not echoed", lambda value: value is False),
    "logprobs": ("log probabilities are not available from the model server", lambda value: type(value) is int and value == 0),
    "logit_bias": ("logit_bias is not available from the model server", lambda value: value == {}),
}


class CompletionRequest(Closed):
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    prompt: str | list[str] = Field(description="A text, or a list of one text; token arrays are refused.")
    suffix: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _nothing_it_cannot_honour(cls, data: Any) -> Any:
        return without_unsupported(data, UNSUPPORTED)

    @field_validator("prompt")
    @classmethod
    def _one_text(cls, prompt: str | list[str]) -> str | list[str]:
        texts = [prompt] if isinstance(prompt, str) else prompt
        if len(texts) != 1:
            raise ValueError("must be a text, or a list of one text (a completion per request)")
        if len(texts[0]) > MAX_PROMPT_CHARS:
            raise ValueError(f"may hold at most {MAX_PROMPT_CHARS} characters")
        return prompt

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionChoice(Schema):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class TextCompletion(Schema):
    """The answer, and each chunk of it when streamed (with no usage until the last, if asked for)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: TokenUsage | None = Field(None, exclude_if=lambda value: value is None)
