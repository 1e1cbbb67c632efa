"""OpenAI's requests, as far as InferGate serves them: Chat Completions and Embeddings (what
they answer is in openai_answers.py).

Every field of a request is honoured or refused with 400 naming it: nothing
is silently dropped. Tools, forced tool calls, structured output, images
(as data: URLs) and sampling options are carried to the model server;
what it cannot do (several choices, log probabilities, logit bias, audio)
is refused unless the request asks for nothing of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from infergate.schemas.base import Closed, Refused
from infergate.schemas.chat import MAX_OUTPUT_TOKENS, MAX_PROMPT_CHARS

# Fields of OpenAI's request that InferGate cannot honour: refused, naming them, unless they
# ask for nothing (null, false, empty, or n=1).
UNSUPPORTED = {
    "logprobs": "log probabilities are not available from the model server",
    "top_logprobs": "log probabilities are not available from the model server",
    "logit_bias": "logit_bias is not available from the model server",
    "functions": "functions is deprecated: send tools instead",
    "function_call": "function_call is deprecated: send tool_choice instead",
    "n": "only n=1 is supported",
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "store": "completions are not stored",
}


def _asks_nothing(name: str, value: Any) -> bool:
    if value is None or value is False or value in ({}, []):
        return True
    return (name == "n" and type(value) is int and value == 1) or (name == "modalities" and value == ["text"])


# Of an image's data, base64-decoded: its base64 (4/3 of it) must fit in a request body, which
# Lambda bounds at 6 MB (MAX_REQUEST_BYTES at most).
MAX_IMAGE_BYTES = 4 * 1024 * 1024
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,([A-Za-z0-9+/=\s]+)$")
_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class TextPart(Closed):
    type: Literal["text"]
    text: str


class ImageUrl(Closed):
    url: str = Field(max_length=8 * MAX_IMAGE_BYTES)
    detail: Literal["auto", "low", "high"] | None = None

    def image(self) -> str:
        """The image as base64, as the model server takes it."""
        if self.url.startswith(("http://", "https://")):
            raise ValueError("image_url must be a data: URL; the gateway fetches nothing on a caller's behalf")
        found = _DATA_URL.match(self.url)
        if found is None:
            raise ValueError("image_url must be a data:image/(png|jpeg|gif|webp);base64,... URL")
        data = "".join(found.group(2).split())
        try:
            size = len(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("image_url's data is not valid base64") from None
        if size > MAX_IMAGE_BYTES:
            raise ValueError(f"an image may be at most {MAX_IMAGE_BYTES} bytes")
        return data


class ImagePart(Closed):
    type: Literal["image_url"]
    image_url: ImageUrl


class FunctionCall(Closed):
    name: str = Field(pattern=_NAME)
    arguments: str = Field(max_length=MAX_PROMPT_CHARS)


class ToolCallIn(Closed):
    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"]
    function: FunctionCall


class Message(Closed):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] | None = None
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=64)
    tool_call_id: str | None = Field(None, min_length=1, max_length=128)
    refusal: str | None = None  # an assistant message as OpenAI returned it

    @model_validator(mode="before")
    @classmethod
    def _no_participant_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" in data:
            if data["name"] is not None:
                raise Refused("name", "participant names are not supported")
            data = {key: value for key, value in data.items() if key != "name"}
        return data

    @model_validator(mode="after")
    def _fits_its_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise Refused("tool_calls", "only an assistant message has tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise Refused("tool_call_id", "a tool message, and only a tool message, has a tool_call_id")
        if isinstance(self.content, list) and self.role not in ("user", "system", "developer", "tool") and any(
                isinstance(part, ImagePart) for part in self.content):
            raise Refused("content", "images may not be sent in assistant messages")
        return self

    def text(self) -> str:
        """The text parts, one after another on lines of their own."""
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""

    def images(self) -> tuple[str, ...]:
        if not isinstance(self.content, list):
            return ()
        return tuple(part.image_url.image() for part in self.content if isinstance(part, ImagePart))


class FunctionDefinition(Closed):
    name: str = Field(pattern=_NAME)
    description: str = Field("", max_length=4096)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None  # the answer is constrained to the schema whenever a call is forced

    @field_validator("parameters")
    @classmethod
    def _an_object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return _schema_the_model_server_takes(schema, must_be_object=True)


class ToolDefinition(Closed):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Closed):
    name: str = Field(pattern=_NAME)


class NamedToolChoice(Closed):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Closed):
    name: str = Field(pattern=_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _takeable(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return _schema_the_model_server_takes(schema)


class ResponseFormat(Closed):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise Refused("json_schema", "goes with type json_schema, and only with it")
        return self

    def answer_format(self) -> str | dict[str, Any] | None:
        if self.type == "json_object":
            return "json"
        return self.json_schema.schema_ if self.json_schema is not None else None


_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
MAX_SCHEMA_BYTES = 64 * 1024


def _schema_the_model_server_takes(schema: dict[str, Any], *, must_be_object: bool = False) -> dict[str, Any]:
    """A JSON schema the model server can constrain an answer to, or ValueError saying why not."""
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise ValueError(f"a schema may be at most {MAX_SCHEMA_BYTES} bytes of JSON")
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind is not None and kind not in _JSON_TYPES:
            raise ValueError(f"'{kind}' is not a JSON schema type")
    if must_be_object and kinds not in (None, "object"):
        raise ValueError("a function's parameters must be an object schema")
    return schema


class StreamOptions(Closed):
    include_usage: bool = False


class ChatCompletionRequest(Closed):
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    tools: list[ToolDefinition] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    # OpenAI's own default tiers ask for nothing; a tier of its fleet (flex, scale, priority) is no model server's.
    service_tier: Literal["auto", "default"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _nothing_it_cannot_honour(cls, data: Any) -> Any:
        """Refuses the UNSUPPORTED fields that ask for something, and sets aside those that do not."""
        if not isinstance(data, dict):
            return data
        refused = [name for name in UNSUPPORTED if name in data and not _asks_nothing(name, data[name])]
        if refused:
            raise Refused(refused[0], UNSUPPORTED[refused[0]])
        return {name: value for name, value in data.items() if name not in UNSUPPORTED}

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences")
        return stop

    @model_validator(mode="after")
    def _coherent(self) -> ChatCompletionRequest:
        if sum(len(m.text()) for m in self.messages) > MAX_PROMPT_CHARS:
            raise Refused("messages", f"may hold at most {MAX_PROMPT_CHARS} characters in all")
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) < len(names):
            raise Refused("tools", "each function needs a name of its own")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise Refused("tool_choice", f"no tool is named '{self.tool_choice.function.name}'")
        if self.tool_choice == "required" and not names:
            raise Refused("tool_choice", "'required' needs tools")
        forcing = self.tool_choice == "required" or isinstance(self.tool_choice, NamedToolChoice)
        if forcing and self.response_format is not None and self.response_format.type != "text":
            raise Refused("response_format", "cannot be combined with a tool_choice that forces a call")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class EmbeddingRequest(Closed):
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    input: str | list[str] = Field(description="A text, or a list of up to 2048 texts; token arrays are refused.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65_536)
    user: str | None = Field(None, max_length=256)

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(item, str) for item in value):
            raise ValueError("must be a string or a list of strings; token arrays are not supported")
        return value

    @field_validator("input")
    @classmethod
    def _some_text(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not 1 <= len(texts) <= 2048 or any(not text for text in texts):
            raise ValueError("must hold 1 to 2048 texts, none of them empty")
        if sum(len(text) for text in texts) > MAX_PROMPT_CHARS:
            raise ValueError(f"may hold at most {MAX_PROMPT_CHARS} characters in all")
        return value
