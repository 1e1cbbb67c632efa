"""Anthropic's Messages API (POST /v1/messages, POST /v1/messages/count_tokens): its requests as
the domain's ChatTask, and the answer as Anthropic shapes it, whole or as its events; errors in
its own shape and with its own types.

What Claude Code sends by default must work: hints that change no answer (cache_control,
context management, a thinking budget, Anthropic's own tools offered but not required, betas
that ask nothing of the gateway) are accepted and named in InferGate-Ignored."""

from __future__ import annotations

import json
from collections.abc import Iterator

from infergate.api.app import App, parse_body
from infergate.api.errors import status_for
from infergate.api.streaming import sse
from infergate.domain.errors import InferGateError, InvalidRequest
from infergate.domain.inference import ChatResult, ChatStream, ChatTask
from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.model_server import Thought
from infergate.domain.tools import tool_use
from infergate.observability import note
from infergate.schemas.anthropic import (
    AnthropicError,
    AnthropicErrorDetail,
    BuiltInTool,
    CountTokensRequest,
    CustomTool,
    ImageBlock,
    MessageOut,
    MessageParam,
    MessagesRequest,
    TextBlock,
    TextOut,
    ThinkingOut,
    TokenCount,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseOut,
    Usage,
)

# Betas that ask for what the gateway refuses (files by id, MCP servers, skills in containers).
REFUSED_BETAS = ("files-api-", "mcp-client-", "skills-", "code-execution-")
# Betas that change nothing the gateway must do, or only what it already reports as ignored.
KNOWN_BETAS = ("claude-code-", "interleaved-thinking-", "fine-grained-tool-streaming-", "context-management-",
               "prompt-caching-", "token-efficient-tools-", "output-128k-", "context-1m-", "oauth-", "effort-",
               "tool-search-tool-", "advanced-tool-use-", "structured-outputs-", "web-search-", "web-fetch-",
               "extended-cache-ttl-", "computer-use-", "token-counting-", "redact-thinking-", "model-context-window-",
               "mid-conversation-tool-changes-", "thinking-token-count-", "per-turn-control-")
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error",
                   529: "overloaded_error"}


def error_body(error: InferGateError) -> AnthropicError:
    status = status_for(error)
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return AnthropicError(error=AnthropicErrorDetail(type=kind, message=error.message))


# -- requests ------------------------------------------------------------------------


def request(app: App) -> tuple[MessagesRequest, ChatTask]:
    body = parse_body(app, MessagesRequest)
    end_user = body.metadata.user_id if body.metadata else None
    note(end_user=end_user)
    options: dict = {name: getattr(body, name) for name in ("temperature", "top_p", "top_k")
                     if getattr(body, name) is not None}
    if body.stop_sequences:
        options["stop"] = body.stop_sequences
    return body, _task(app, body, max_tokens=body.max_tokens, options=options, end_user=end_user)


def count_request(app: App) -> ChatTask:
    return _task(app, parse_body(app, CountTokensRequest))


def _task(app: App, body: CountTokensRequest, **asked) -> ChatTask:
    choice = body.tool_choice
    functions = [Tool(t.name, t.description, t.input_schema) for t in body.tools or [] if isinstance(t, CustomTool)]
    return ChatTask(
        messages=_conversation(body), model=body.model,
        tools=tool_use(functions, _choice(body)), answer_format=body.answer_schema(),
        one_tool_call=bool(choice and choice.disable_parallel_tool_use),
        think=bool(body.thinking and body.thinking.type != "disabled"), ignored=_ignored(app, body), **asked)


def _choice(body: CountTokensRequest) -> str:
    choice = body.tool_choice
    if choice is None or choice.type == "auto":
        return "auto"
    return {"any": "required", "none": "none"}.get(choice.type) or choice.name or "auto"


def _conversation(body: CountTokensRequest) -> list[Message]:
    """The system prompt and the messages in the domain's terms: a user message's tool results
    become tool messages (naming the call each answers) before its text."""
    conversation = [Message(role="system", content=body.system_text())] if body.system else []
    called: dict[str, str] = {}
    for index, message in enumerate(body.messages):
        conversation += _messages(message, called, index)
    return conversation


def _messages(message: MessageParam, called: dict[str, str], index: int) -> list[Message]:
    blocks = message.blocks()
    text = "\n".join(block.text for block in blocks if isinstance(block, TextBlock))
    if message.role == "system":
        return [Message(role="system", content=text)]
    if message.role == "assistant":
        calls = tuple(ToolCall(block.id, block.name, block.input) for block in blocks if isinstance(block, ToolUseBlock))
        called |= {call.id: call.name for call in calls}
        return [Message(role="assistant", content=text, tool_calls=calls)]
    answered = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            if block.tool_use_id not in called:
                raise InvalidRequest(f"messages.{index}: tool_use_id '{block.tool_use_id}' answers no tool_use "
                                     "made before it", param=f"messages.{index}.content")
            answered.append(Message(role="tool", content=block.text(), tool_name=called[block.tool_use_id],
                                    tool_call_id=block.tool_use_id, images=block.images()))
    images = tuple(block.source.data or "" for block in blocks if isinstance(block, ImageBlock))
    if text or images or not answered:
        answered.append(Message(role="user", content=text, images=images))
    return answered


def _ignored(app: App, body: CountTokensRequest) -> tuple[str, ...]:
    """The hints the request carries that a self-hosted model cannot apply, as its fields name them."""
    ignored = [f"tools.{tool.name}" for tool in body.tools or [] if isinstance(tool, BuiltInTool)]
    if any(isinstance(tool, CustomTool) and tool.defer_loading for tool in body.tools or []):
        ignored.append("tools.defer_loading")
    if body.thinking is not None and body.thinking.budget_tokens is not None:
        ignored.append("thinking.budget_tokens")
    if body.context_management:
        ignored.append("context_management")
    if body.output_config is not None and body.output_config.effort is not None:
        ignored.append("output_config.effort")
    if any(message.output_config is not None and message.output_config.effort is not None for message in body.messages):
        ignored.append("messages.output_config.effort")
    if _cache_control(body):
        ignored.append("cache_control")
    if body.speed == "fast":
        ignored.append("speed")
    return (*ignored, *_unknown_betas(app))


def _cache_control(body: CountTokensRequest) -> bool:
    blocks = [*(body.system if isinstance(body.system, list) else []), *(body.tools or []),
              *(block for message in body.messages for block in message.blocks())]
    return body.cache_control is not None or any(getattr(block, "cache_control", None) is not None for block in blocks)


def _unknown_betas(app: App) -> list[str]:
    """Betas the gateway does not know, accepted and reported; 400 for one it cannot honour."""
    header = app.current_event.headers.get("anthropic-beta") or ""
    unknown = []
    for beta in filter(None, (value.strip() for value in header.split(","))):
        if beta.startswith(REFUSED_BETAS):
            raise InvalidRequest(f"anthropic-beta: '{beta}' asks for what this gateway does not serve.",
                                 param="anthropic-beta")
        if not beta.startswith(KNOWN_BETAS):
            unknown.append(f"anthropic-beta.{beta}")
    return unknown


# -- answers -------------------------------------------------------------------------


def _stop_reason(result: ChatResult) -> str:
    if result.tool_calls:
        return "tool_use"
    return "max_tokens" if result.done_reason == "length" else "end_turn"


def _usage(result: ChatResult) -> Usage:
    return Usage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens)


def message(result: ChatResult, *, thoughts: bool = True) -> MessageOut:
    """`thoughts`: whether what the model thought is shown (thinking's `display` is not `omitted`)."""
    content: list = [ThinkingOut(thinking=result.thinking)] if result.thinking and thoughts else []
    if result.content or not result.tool_calls:
        content.append(TextOut(text=result.content))
    content += [ToolUseOut(id=call.id, name=call.name, input=dict(call.arguments)) for call in result.tool_calls]
    return MessageOut(id=f"msg_{result.id}", model=result.model, content=content, stop_reason=_stop_reason(result),
                      usage=_usage(result))


def token_count(tokens: int) -> TokenCount:
    return TokenCount(input_tokens=tokens)


def _event(kind: str, **data) -> str:
    return sse(json.dumps({"type": kind, **data}, separators=(",", ":")), event=kind)


class _Blocks:
    """The content blocks of a streamed answer, opened and closed as its pieces change kind."""

    def __init__(self) -> None:
        self.index, self.open = -1, None

    def to(self, kind: str, start: dict) -> Iterator[str]:
        if self.open != kind:
            yield from self.close()
            self.index, self.open = self.index + 1, kind
            yield _event("content_block_start", index=self.index, content_block=start)

    def close(self) -> Iterator[str]:
        if self.open == "thinking":  # a thinking block ends with its signature: none, for a self-hosted model
            yield _event("content_block_delta", index=self.index, delta={"type": "signature_delta", "signature": ""})
        if self.open is not None:
            yield _event("content_block_stop", index=self.index)
            self.open = None


def event_stream(stream: ChatStream, *, thoughts: bool = True) -> Iterator[str]:
    """Anthropic's events as the model produces the answer: message_start and a ping, a block per
    kind of content (thinking, when `thoughts` are shown, then text, then each tool call),
    message_delta with the stop reason and usage, message_stop. An answer cut off ends with an
    `error` event instead."""
    blocks = _Blocks()
    yield _event("message_start", message=MessageOut(
        id=f"msg_{stream.id}", model=stream.model, content=[], stop_reason=None,
        usage=Usage(input_tokens=0, output_tokens=0)).model_dump(mode="json"))
    yield _event("ping")
    try:
        for piece in stream:
            if isinstance(piece, Thought):
                if not thoughts:
                    continue
                yield from blocks.to("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                yield _event("content_block_delta", index=blocks.index,
                             delta={"type": "thinking_delta", "thinking": piece.text})
            else:
                yield from blocks.to("text", {"type": "text", "text": ""})
                yield _event("content_block_delta", index=blocks.index, delta={"type": "text_delta", "text": piece})
    except InferGateError as failure:
        yield sse(error_body(failure).model_dump_json(), event="error")
        return
    finally:
        stream.close()
    result = stream.result
    assert result is not None
    if not result.tool_calls and blocks.open != "text":
        yield from blocks.to("text", {"type": "text", "text": ""})
    yield from blocks.close()
    for call in result.tool_calls:  # each call as Anthropic streams one: its name, then its input as JSON
        yield from blocks.to(f"tool_use {call.id}", {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        yield _event("content_block_delta", index=blocks.index,
                     delta={"type": "input_json_delta", "partial_json": json.dumps(dict(call.arguments))})
        yield from blocks.close()
    yield _event("message_delta", delta={"stop_reason": _stop_reason(result), "stop_sequence": None},
                 usage=_usage(result).model_dump(mode="json"))
    yield _event("message_stop")
