"""Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens): its requests as
Claude Code and the SDKs send them, and what it answers, whole or as events.

Every field is honoured, accepted as a hint that changes no answer, or refused with 400
naming it. Hints a self-hosted model cannot apply (prompt caching's `cache_control`, context
management, a thinking budget, tools Anthropic runs itself) are accepted, and the answer says
which were not applied (api/anthropic.py)."""

# Longer than 300 lines: the request's shapes and the answer's belong to one API, read together.

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from infergate.schemas.base import Closed, Refused, Schema
from infergate.schemas.chat import MAX_PROMPT_CHARS
from infergate.schemas.openai import MAX_IMAGE_BYTES, _schema_the_model_server_takes

# Anthropic's largest max_tokens; the plan's max_output_tokens bounds what is generated.
MAX_TOKENS = 128_000
_NAME = r"^[A-Za-z0-9_-]{1,128}$"


class CacheControl(Closed):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(Closed):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None  # citations of an earlier answer: read as its text


class ImageSource(Closed):
    type: Literal["base64", "url"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"] | None = None
    data: str | None = Field(None, max_length=8 * MAX_IMAGE_BYTES)
    url: str | None = None

    @model_validator(mode="after")
    def _inline(self) -> ImageSource:
        if self.type == "url" or self.data is None:
            raise Refused("type", "an image must be sent as base64 data; the gateway fetches nothing on a caller's behalf")
        try:
            size = len(base64.b64decode(self.data, validate=True))
        except (binascii.Error, ValueError):
            raise Refused("data", "is not valid base64") from None
        if size > MAX_IMAGE_BYTES:
            raise Refused("data", f"an image may be at most {MAX_IMAGE_BYTES} bytes")
        return self


class ImageBlock(Closed):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class ToolUseBlock(Closed):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(Closed):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool | None = None
    cache_control: CacheControl | None = None

    def text(self) -> str:
        text = self.content if isinstance(self.content, str) else "\n".join(
            block.text for block in self.content if isinstance(block, TextBlock))
        return f"Error: {text}" if self.is_error else text

    def images(self) -> tuple[str, ...]:
        return () if isinstance(self.content, str) else tuple(
            block.source.data or "" for block in self.content if isinstance(block, ImageBlock))


class ThinkingBlock(Closed):
    """An earlier answer's thinking, sent back: not read again (a model reads only its latest thoughts)."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None
    cache_control: CacheControl | None = None


class RedactedThinkingBlock(Closed):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
                  Field(discriminator="type")]


Effort = Literal["low", "medium", "high", "xhigh", "max"]


class TurnConfig(Closed):
    """A system message's own output_config (the per-turn-control beta): `format` stays top-level only."""

    effort: Effort | None = None  # a hint, as the request's own


class MessageParam(Closed):
    # Claude Code sends a `system` message among the messages (its environment and the tools it defers),
    # with an output_config of its own (its effort for the turn).
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]
    output_config: TurnConfig | None = None

    @model_validator(mode="after")
    def _fits_its_role(self) -> MessageParam:
        blocks = [] if isinstance(self.content, str) else self.content
        kinds = {block.type for block in blocks}
        if self.role != "system" and self.output_config is not None:
            raise Refused("output_config", "only a system message carries an output_config of its own")
        if self.role == "system" and kinds - {"text"}:
            raise Refused("content", "a system message holds text blocks only")
        if self.role == "user" and kinds & {"tool_use", "thinking", "redacted_thinking"}:
            raise Refused("content", "tool_use and thinking blocks belong in assistant messages")
        if self.role == "assistant" and kinds & {"tool_result", "image"}:
            raise Refused("content", "tool_result and image blocks belong in user messages")
        return self

    def blocks(self) -> list[Any]:
        return [TextBlock(type="text", text=self.content)] if isinstance(self.content, str) else list(self.content)


class CustomTool(Closed):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=_NAME)
    description: str = Field("", max_length=100_000)
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    defer_loading: bool | None = None  # tool search's hint: every tool is offered from the start
    strict: bool | None = None
    input_examples: list[dict[str, Any]] | None = None
    eager_input_streaming: bool | None = None

    @field_validator("input_schema")
    @classmethod
    def _an_object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return _schema_the_model_server_takes(schema, must_be_object=True)


class BuiltInTool(Schema):
    """A tool Anthropic defines and runs (web search, code execution, bash, the text editor ...):
    not offered to a self-hosted model, and reported as ignored."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    type: str = Field(pattern=r"^[a-z_]+_\d{8}$")
    name: str = Field(min_length=1, max_length=128)


def _tool_kind(tool: Any) -> str:
    """A tool with a type other than `custom` is one Anthropic defines; any other is the caller's."""
    kind = tool.get("type") if isinstance(tool, dict) else getattr(tool, "type", None)
    return "custom" if kind in (None, "custom") else "built_in"


Tool = Annotated[Annotated[CustomTool, Tag("custom")] | Annotated[BuiltInTool, Tag("built_in")],
                 Discriminator(_tool_kind)]


class ToolChoice(Closed):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, min_length=1, max_length=128)
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _name_with_tool(self) -> ToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise Refused("name", "goes with type tool, and only with it")
        return self


class Thinking(Closed):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024, le=MAX_TOKENS)
    display: Literal["summarized", "omitted"] | None = None

    @model_validator(mode="after")
    def _budget_when_enabled(self) -> Thinking:
        if self.type == "enabled" and self.budget_tokens is None:
            raise Refused("budget_tokens", "is required when thinking is enabled")
        return self


class OutputFormat(Closed):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _takeable(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return _schema_the_model_server_takes(schema)


class OutputConfig(Closed):
    effort: Effort | None = None  # a hint: how hard to think
    format: OutputFormat | None = None


class Metadata(Closed):
    user_id: str | None = Field(None, max_length=512)


class CountTokensRequest(Closed):
    """What the model reads: the body of /v1/messages/count_tokens, and the part of a message
    request that is prompt."""

    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@-]+$")
    messages: list[MessageParam] = Field(min_length=1, max_length=10_000)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = Field(None, max_length=512)
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    context_management: dict[str, Any] | None = None  # a hint: a self-hosted model's context is the server's
    cache_control: CacheControl | None = None  # a hint: prompt caching, marked once for the whole request
    speed: Literal["standard", "fast"] | None = None  # a hint: a self-hosted model has one speed
    output_config: OutputConfig | None = None
    output_format: OutputFormat | None = None
    mcp_servers: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> CountTokensRequest:
        if self.mcp_servers:
            raise Refused("mcp_servers", "the gateway connects to no MCP server on a caller's behalf")
        if sum(len(block.text) for m in self.messages for block in m.blocks() if isinstance(block, TextBlock)) > (
                MAX_PROMPT_CHARS * 5):
            raise Refused("messages", f"may hold at most {MAX_PROMPT_CHARS * 5} characters of text in all")
        names = [tool.name for tool in self.tools or []]
        if len(set(names)) < len(names):
            raise Refused("tools", "each tool needs a name of its own")
        choice = self.tool_choice
        if choice is not None and choice.type == "tool" and choice.name not in self.functions():
            raise Refused("tool_choice", f"'{choice.name}' is not a custom tool offered; a tool Anthropic runs "
                          "itself cannot be required here" if choice.name in names else f"no tool is named '{choice.name}'")
        if choice is not None and choice.type == "any" and not self.functions():
            raise Refused("tool_choice", "'any' needs a custom tool offered")
        if self.output_format is not None and self.output_config is not None and self.output_config.format is not None:
            raise Refused("output_format", "send output_config.format or output_format, not both")
        return self

    @property
    def thoughts_shown(self) -> bool:
        return self.thinking is None or self.thinking.display != "omitted"

    def functions(self) -> list[str]:
        return [tool.name for tool in self.tools or [] if isinstance(tool, CustomTool)]

    def system_text(self) -> str:
        if isinstance(self.system, list):
            return "\n".join(block.text for block in self.system)
        return self.system or ""

    def answer_schema(self) -> dict[str, Any] | None:
        found = self.output_format or (self.output_config.format if self.output_config else None)
        return found.schema_ if found is not None else None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    stream: bool = False
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = Field(None, max_length=16)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None  # ask for nothing of a self-hosted model
    container: str | None = None

    @model_validator(mode="after")
    def _no_container(self) -> MessagesRequest:
        if self.container:
            raise Refused("container", "the gateway runs no code execution containers")
        return self


# -- answers -------------------------------------------------------------------------


class Usage(Schema):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class TextOut(Schema):
    type: Literal["text"] = "text"
    text: str


class ThinkingOut(Schema):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""  # a self-hosted model's thoughts carry no signature


class ToolUseOut(Schema):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentOut = TextOut | ThinkingOut | ToolUseOut
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class MessageOut(Schema):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentOut]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(Schema):
    input_tokens: int


class AnthropicErrorDetail(Schema):
    type: str
    message: str


class AnthropicError(Schema):
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
