"""OpenAI's API (POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models and
GET /v1/models/{model}): its requests as the domain's tasks, and the domain's answers as
OpenAI shapes them, whole or streamed."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

from infergate.api.app import App, parse_body
from infergate.api.chat import usage
from infergate.api.streaming import error_event, sse
from infergate.domain.errors import InferGateError, InvalidRequest, NotFound
from infergate.domain.inference import ChatResult, ChatStream, ChatTask, EmbeddingResult, EmbeddingTask
from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.model_server import ModelEntry
from infergate.domain.tools import tool_use
from infergate.observability import note
from infergate.schemas import openai as schemas
from infergate.schemas.chat import TokenUsage
from infergate.schemas.completions import CompletionRequest
from infergate.schemas.openai import ChatCompletionRequest, EmbeddingRequest, NamedToolChoice
from infergate.schemas.openai_answers import (
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

# -- requests ------------------------------------------------------------------------


def chat_request(app: App) -> tuple[ChatCompletionRequest, ChatTask]:
    """The body, and the chat it asks for; its metadata and end user go on the access line."""
    body = parse_body(app, ChatCompletionRequest)
    note(metadata=body.metadata, end_user=body.user)
    return body, chat_task(body)


def chat_task(body: ChatCompletionRequest) -> ChatTask:
    """The chat a body asks for, in the domain's terms; 400 for what only its meaning can refuse."""
    options = sampling_options(body)
    tools = [Tool(t.function.name, t.function.description, t.function.parameters) for t in body.tools or []]
    try:
        conversation = _conversation(body.messages)
    except ValueError as error:  # an image that cannot be taken
        raise InvalidRequest(f"messages: {error}") from None
    return ChatTask(
        messages=conversation, model=body.model, max_tokens=body.max_completion_tokens or body.max_tokens,
        options=options, tools=tool_use(tools, _choice(body)),
        answer_format=body.response_format.answer_format() if body.response_format else None,
        one_tool_call=body.parallel_tool_calls is False, end_user=body.user)


def sampling_options(body: ChatCompletionRequest | CompletionRequest) -> dict:
    """OpenAI's sampling fields that are set, as the model server's options."""
    options: dict = {name: getattr(body, name) for name in (
        "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty") if getattr(body, name) is not None}
    if body.stop is not None:
        options["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    return options


def _choice(body: ChatCompletionRequest) -> str:
    if isinstance(body.tool_choice, NamedToolChoice):
        return body.tool_choice.function.name
    return body.tool_choice or "auto"


def _conversation(messages: list[schemas.Message]) -> list[Message]:
    """The messages in the domain's terms; a tool's result names the tool whose call it answers."""
    called: dict[str, str] = {}
    conversation = []
    for m in messages:
        calls = tuple(_tool_call(call) for call in m.tool_calls or [])
        called |= {call.id: call.name for call in calls}
        if m.role == "tool" and m.tool_call_id not in called:
            raise InvalidRequest(f"messages: tool_call_id '{m.tool_call_id}' answers no call made before it")
        conversation.append(Message(
            role="system" if m.role == "developer" else m.role, content=m.text(), tool_calls=calls,
            tool_name=called.get(m.tool_call_id) if m.tool_call_id else None, tool_call_id=m.tool_call_id,
            images=m.images()))
    return conversation


def _tool_call(call: schemas.ToolCallIn) -> ToolCall:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"messages: the arguments of tool call '{call.id}' must be a JSON object, as a string")
    return ToolCall(call.id, call.function.name, arguments)


def embedding_request(app: App) -> tuple[EmbeddingRequest, EmbeddingTask]:
    body = parse_body(app, EmbeddingRequest)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    return body, EmbeddingTask(inputs=texts, model=body.model, dimensions=body.dimensions, end_user=body.user)


# -- answers -------------------------------------------------------------------------


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
        usage=usage(result),
    )


def event_stream(stream: ChatStream, *, include_usage: bool) -> Iterator[str]:
    """The answer as OpenAI streams it, as the model produces it: a chunk per piece of content,
    then the tool calls, the finish reason, the usage when asked for, and `data: [DONE]`. An
    answer cut off ends with an error event instead, after what was generated."""
    chunk_id, created = f"chatcmpl-{stream.id}", int(stream.created.timestamp())

    def chunk(delta: Delta, finish_reason: str | None = None, *, usage: TokenUsage | None = None,
              choices: bool = True) -> str:
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
        yield chunk(Delta(), usage=usage(result), choices=False)
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


def model(app: App, routed: str, models: list[ModelEntry]) -> ModelCard:
    """The model the path names (`routed`, as the resolver matched it), among `models`; 404
    model_not_found if it is not one."""
    # API Gateway's path parameter is percent-decoded (smollm2%3A135m is smollm2:135m); the path is not.
    name = app.current_event.path_parameters.get("model") or routed
    entry = next((entry for entry in models if entry.name == name), None)
    if entry is None:
        raise NotFound(f"The model '{name}' does not exist on this gateway.", code="model_not_found", param="model")
    return model_card(entry)
