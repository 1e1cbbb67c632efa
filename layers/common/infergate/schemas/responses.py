"""OpenAI's Responses API (POST /v1/responses, and a kept response's GET, DELETE and input
items): its requests as Codex CLI and the Agents SDK send them, and what it answers.

Every field is honoured, accepted as a hint that changes no answer, or refused with 400
naming it. Tools OpenAI runs itself (web search, file search, computer use ...) are not
offered to a self-hosted model; `namespace` tools are unpacked into their functions."""

# Longer than 300 lines: the request's shapes and the answer's belong to one API, read together.

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from infergate.schemas.base import Closed, Refused, Schema, without_unsupported
from infergate.schemas.openai import _NAME, ImageUrl, JsonSchemaFormat, _schema_the_model_server_takes

MAX_OUTPUT_TOKENS = 128_000
_ID = Field(None, min_length=1, max_length=256)


class InputText(Closed):
    type: Literal["input_text"]
    text: str


class InputImage(Closed):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None

    def image(self) -> str:
        if self.image_url is None:
            raise Refused("image_url", "an image must be sent as a data: URL; files are not served here")
        try:
            return ImageUrl(url=self.image_url).image()
        except ValueError as error:
            raise Refused("image_url", str(error)) from None


class OutputText(Closed):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class RefusalPart(Closed):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[InputText | InputImage | OutputText | RefusalPart, Field(discriminator="type")]


class MessageItem(Closed):
    type: Literal["message"] = "message"
    id: str | None = _ID
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text if isinstance(part, (InputText, OutputText)) else part.refusal
                         for part in self.content if not isinstance(part, InputImage))

    def images(self) -> tuple[str, ...]:
        return () if isinstance(self.content, str) else tuple(
            part.image() for part in self.content if isinstance(part, InputImage))


class FunctionCallItem(Closed):
    type: Literal["function_call"]
    id: str | None = _ID
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    arguments: str
    status: str | None = None
    namespace: str | None = None


class FunctionCallOutputItem(Closed):
    type: Literal["function_call_output"]
    id: str | None = _ID
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[InputText]
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "\n".join(part.text for part in self.output)


class ReasoningItem(Schema):
    """An earlier answer's reasoning, sent back: not read again (a model reads only its latest thoughts)."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    type: Literal["reasoning"]
    id: str | None = None


def _item_kind(item: Any) -> str:
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", "message")
    return kind if kind in ("message", "function_call", "function_call_output", "reasoning") else "unknown"


class UnknownItem(Schema):
    """Items of kinds the gateway cannot read (item references, built-in tools' calls): refused, naming them."""

    @model_validator(mode="before")
    @classmethod
    def _refused(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        raise Refused("type", f"'{kind}' items are not served here: send messages, function calls and their outputs")


Item = Annotated[Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
                 | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
                 | Annotated[ReasoningItem, Tag("reasoning")] | Annotated[UnknownItem, Tag("unknown")],
                 Discriminator(_item_kind)]


class FunctionTool(Closed):
    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = Field(None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _an_object_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return schema if schema is None else _schema_the_model_server_takes(schema, must_be_object=True)


class NamespaceTool(Closed):
    """Functions grouped under a name (Codex's tool groups): offered as its functions."""

    type: Literal["namespace"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    tools: list[FunctionTool] = Field(max_length=512)


class BuiltInTool(Schema):
    """A tool OpenAI defines and runs (web_search, file_search, computer_use_preview, code_interpreter,
    image_generation, mcp, custom grammars ...): not offered to a self-hosted model, and reported."""

    model_config = ConfigDict(defer_build=True, extra="allow")
    type: str = Field(min_length=1, max_length=64)
    name: str | None = None


def _tool_kind(tool: Any) -> str:
    kind = tool.get("type") if isinstance(tool, dict) else getattr(tool, "type", None)
    return kind if kind in ("function", "namespace") else "built_in"


ToolParam = Annotated[Annotated[FunctionTool, Tag("function")] | Annotated[NamespaceTool, Tag("namespace")]
                      | Annotated[BuiltInTool, Tag("built_in")], Discriminator(_tool_kind)]


class FunctionChoice(Closed):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)


class BuiltInChoice(Schema):
    model_config = ConfigDict(defer_build=True, extra="allow")
    type: str


class TextFormat(Closed):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, pattern=_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_with_json_schema(self) -> TextFormat:
        if (self.type == "json_schema") != (self.schema_ is not None):
            raise Refused("schema", "goes with type json_schema, and only with it")
        if self.schema_ is not None:
            JsonSchemaFormat(name=self.name or "answer", schema=self.schema_)
        return self

    def answer_format(self) -> str | dict[str, Any] | None:
        return "json" if self.type == "json_object" else self.schema_


class TextConfig(Closed):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None  # a hint


class Reasoning(Closed):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed", "none"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    context: str | None = None  # which turns' reasoning a model rereads: none is reread here

    @property
    def thinks(self) -> bool:
        return self.effort not in (None, "none", "minimal")


class StreamOptions(Closed):
    include_obfuscation: bool | None = None


# Fields a self-hosted model cannot honour, refused unless they ask for nothing (null always may).
UNSUPPORTED = {
    "background": ("responses are answered while the caller waits", lambda value: value is False),
    "conversation": ("conversations are not kept; send previous_response_id", lambda value: False),
    "prompt": ("prompt templates are not kept here", lambda value: False),
    "top_logprobs": ("log probabilities are not available from the model server",
                     lambda value: type(value) is int and value == 0),
}
LOGPROBS = "message.output_text.logprobs"


class ResponsesRequest(Closed):
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@-]+$")
    input: str | list[Item] = Field(min_length=1)
    instructions: str | None = None
    tools: list[ToolParam] | None = Field(None, max_length=512)
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | BuiltInChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    store: bool = True
    previous_response_id: str | None = Field(None, min_length=1, max_length=256)
    reasoning: Reasoning | None = None
    include: list[str] | None = None
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    service_tier: Literal["auto", "default"] | None = None
    truncation: Literal["disabled", "auto"] | None = None
    # Hints: the model server caches prompts its own way; built-in tools are never called here.
    prompt_cache_key: str | None = Field(None, max_length=1024)
    prompt_cache_retention: str | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    client_metadata: dict[str, Any] | None = None

    model_config = ConfigDict(defer_build=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _nothing_it_cannot_honour(cls, data: Any) -> Any:
        return without_unsupported(data, UNSUPPORTED)

    @model_validator(mode="after")
    def _coherent(self) -> ResponsesRequest:
        if LOGPROBS in (self.include or []):
            raise Refused("include", "log probabilities are not available from the model server")
        names = self.functions()
        if len(set(names)) < len(names):
            raise Refused("tools", "each function needs a name of its own")
        choice = self.tool_choice
        if isinstance(choice, FunctionChoice) and choice.name not in names:
            raise Refused("tool_choice", f"no function is named '{choice.name}'")
        if isinstance(choice, BuiltInChoice):
            raise Refused("tool_choice", f"'{choice.type}' is a tool OpenAI runs itself; it cannot be required here")
        if choice == "required" and not names:
            raise Refused("tool_choice", "'required' needs a function tool")
        forcing = choice == "required" or isinstance(choice, FunctionChoice)
        if forcing and self.text is not None and self.text.format is not None and self.text.format.type != "text":
            raise Refused("text", "a format cannot be combined with a tool_choice that forces a call")
        return self

    def function_tools(self) -> list[FunctionTool]:
        found = []
        for tool in self.tools or []:
            found += tool.tools if isinstance(tool, NamespaceTool) else [tool] if isinstance(tool, FunctionTool) else []
        return found

    def functions(self) -> list[str]:
        return [tool.name for tool in self.function_tools()]

    def items(self) -> list[Any]:
        return [MessageItem(role="user", content=self.input)] if isinstance(self.input, str) else list(self.input)


# -- answers -------------------------------------------------------------------------


class ResponseError(Schema):
    code: str
    message: str


class IncompleteDetails(Schema):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(Schema):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(Schema):
    reasoning_tokens: int = 0


class ResponseUsage(Schema):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseObject(Schema):
    """A response, as POST /v1/responses answers it and as it is kept. Its settings echo the request's."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[dict[str, Any]]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = Field(None, exclude_if=lambda value: value is None)
    user: str | None = Field(None, exclude_if=lambda value: value is None)
    metadata: dict[str, str] = Field(default_factory=dict)


class ItemList(Schema):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


class Deleted(Schema):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ItemsQuery(Closed):
    """GET /v1/responses/{id}/input_items' paging: `after` an item id, `limit` items, in `order`."""

    after: str | None = None
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    include: str | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value
