"""OpenAI's Responses API (POST /v1/responses; GET and DELETE /v1/responses/{id}; GET
/v1/responses/{id}/input_items): its requests as the domain's ChatTask, a conversation
continued from a kept response, and the answer as the Responses API shapes it, whole or as its
events, each with its sequence number.

What Codex CLI and the Agents SDK send by default must work: hints that change no answer
(reasoning summaries, prompt-cache keys, encrypted reasoning, OpenAI's own tools offered but not
required) are accepted and named in InferGate-Ignored."""

# Longer than 300 lines: one API's translator, its request, its answer whole and as events, and what
# is kept of it; each part reads the others' shapes.

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from infergate.api.app import App, parse_body, parse_query
from infergate.api.streaming import sse
from infergate.domain import keys
from infergate.domain.errors import InferGateError, InvalidRequest
from infergate.domain.inference import ChatResult, ChatStream, ChatTask
from infergate.domain.kept_responses import KeptResponse, KeptResponses
from infergate.domain.messages import Message, Tool, ToolCall
from infergate.domain.model_server import Thought
from infergate.domain.tools import tool_use
from infergate.observability import note
from infergate.schemas.responses import (
    BuiltInTool,
    Deleted,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    ItemList,
    ItemsQuery,
    MessageItem,
    OutputTokensDetails,
    ResponseError,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)

Keep = Callable[[Mapping[str, Any]], None]
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


# -- requests ------------------------------------------------------------------------


def request(app: App, context: Callable[[str], KeptResponse]) -> tuple[ResponsesRequest, ChatTask, list[dict]]:
    """The body, the chat it asks for, and the conversation it continues (`context` finds a kept
    response by id: the caller's own, or 404)."""
    body = parse_body(app, ResponsesRequest)
    note(metadata=body.metadata, end_user=body.safety_identifier or body.user)
    before = context(body.previous_response_id).conversation() if body.previous_response_id else []
    conversation = _conversation([*_items(before), *body.items()], body.instructions, first_new=len(before))
    choice = body.tool_choice.name if isinstance(body.tool_choice, FunctionChoice) else body.tool_choice or "auto"
    functions = [Tool(t.name, t.description or "", t.parameters or {"type": "object", "properties": {}})
                 for t in body.function_tools()]
    options = {name: getattr(body, name) for name in ("temperature", "top_p") if getattr(body, name) is not None}
    text_format = body.text.format if body.text else None
    task = ChatTask(messages=conversation, model=body.model, max_tokens=body.max_output_tokens, options=options,
                    tools=tool_use(functions, choice), answer_format=text_format.answer_format() if text_format else None,
                    one_tool_call=body.parallel_tool_calls is False, end_user=body.safety_identifier or body.user,
                    think=bool(body.reasoning and body.reasoning.thinks), ignored=_ignored(body))
    return body, task, list(before)


@cache
def _item_adapter() -> Any:
    from pydantic import TypeAdapter

    from infergate.schemas.responses import Item

    return TypeAdapter(list[Item])


def _items(kept: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A kept conversation's items, read again as the request's are."""
    return _item_adapter().validate_python(list(kept)) if kept else []


def _conversation(items: Sequence[Any], instructions: str | None, *, first_new: int) -> list[Message]:
    """The instructions and the items in the domain's terms: function calls join the assistant's
    message before them, and an output names the call it answers. Reasoning is not read again."""
    messages = [Message(role="system", content=instructions)] if instructions else []
    called: dict[str, str] = {}
    for index, item in enumerate(items):
        where = f"input.{index - first_new}"
        if isinstance(item, MessageItem):
            role = "system" if item.role in ("system", "developer") else item.role
            messages.append(Message(role=role, content=item.text(), images=item.images()))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, _arguments(item, where))
            called[item.call_id] = item.name
            if messages and messages[-1].role == "assistant":
                last = messages.pop()
                messages.append(Message(role="assistant", content=last.content, tool_calls=(*last.tool_calls, call)))
            else:
                messages.append(Message(role="assistant", content="", tool_calls=(call,)))
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in called:
                raise InvalidRequest(f"{where}: call_id '{item.call_id}' answers no function_call before it",
                                     param=f"{where}.call_id")
            messages.append(Message(role="tool", content=item.text(), tool_name=called[item.call_id],
                                    tool_call_id=item.call_id))
    return messages


def _arguments(item: FunctionCallItem, where: str) -> dict[str, Any]:
    try:
        arguments = json.loads(item.arguments or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{where}: arguments must be a JSON object, as a string", param=f"{where}.arguments")
    return arguments


def _ignored(body: ResponsesRequest) -> tuple[str, ...]:
    """The hints the request carries that a self-hosted model cannot apply, as its fields name them."""
    reasoning, text = body.reasoning, body.text
    named = [f"tools.{tool.type}" for tool in body.tools or [] if isinstance(tool, BuiltInTool)]
    named += ["tools.defer_loading"] if any(tool.defer_loading for tool in body.function_tools()) else []
    for field, asked in (
        ("reasoning.summary", reasoning and (reasoning.summary not in (None, "none") or reasoning.generate_summary)),
        ("reasoning.context", reasoning and reasoning.context),
        ("include", body.include), ("prompt_cache_key", body.prompt_cache_key or body.prompt_cache_retention),
        ("client_metadata", body.client_metadata), ("text.verbosity", text and text.verbosity),
        ("truncation", body.truncation == "auto"), ("max_tool_calls", body.max_tool_calls),
        ("stream_options.include_obfuscation", body.stream_options and body.stream_options.include_obfuscation),
    ):
        if asked:
            named.append(field)
    return tuple(named)


def reported(ignored: Sequence[str]) -> tuple[str, ...]:
    """What was not applied, in this API's words: thinking is its `reasoning.effort`."""
    return tuple("reasoning.effort" if name == "thinking" else name for name in ignored)


def input_items(body: ResponsesRequest) -> list[dict]:
    """The request's input as it is kept and listed: each item with its type, its id, its status and its
    content as parts, as the API returns items (an assistant's text with its annotations and logprobs,
    a reasoning item with its summary)."""
    kept = []
    for item in body.items():
        data = item.model_dump(mode="json", exclude_none=True, by_alias=True)
        data.setdefault("type", "message")
        data.setdefault("id", keys.new_id(_ID_PREFIXES.get(data["type"], "item")))
        data.setdefault("status", "completed")
        if data["type"] == "message" and isinstance(data["content"], str):
            part = "output_text" if data["role"] == "assistant" else "input_text"
            data["content"] = [{"type": part, "text": data["content"]}]
        if data["type"] == "message":
            for part in data["content"]:
                if part["type"] == "output_text":
                    part.setdefault("annotations", [])
                    part.setdefault("logprobs", [])
        if data["type"] == "reasoning":
            data.setdefault("summary", [])
        kept.append(data)
    return kept


# -- answers -------------------------------------------------------------------------


class Shaper:
    """A response's shape for one request: its settings echoed, its output, its status and usage."""

    def __init__(self, body: ResponsesRequest, response_id: str, created_at: int) -> None:
        self.body, self.id, self.created_at = body, f"resp_{response_id}", created_at
        self.thoughts = body.reasoning is not None  # thoughts are shown when reasoning was asked about

    @classmethod
    def of(cls, body: ResponsesRequest, call_id: str, created: datetime) -> Shaper:
        return cls(body, call_id, int(created.timestamp()))

    def response(self, model: str, status: str, output: list[dict], *, usage: ResponseUsage | None = None,
                 error: ResponseError | None = None) -> ResponseObject:
        body = self.body
        return ResponseObject(
            id=self.id, created_at=self.created_at, status=status, error=error, model=model, output=output,
            incomplete_details={"reason": "max_output_tokens"} if status == "incomplete" else None,
            instructions=body.instructions, max_output_tokens=body.max_output_tokens,
            parallel_tool_calls=body.parallel_tool_calls is not False, previous_response_id=body.previous_response_id,
            reasoning=body.reasoning.model_dump(exclude_none=True) if body.reasoning else None, store=body.store,
            temperature=body.temperature, top_p=body.top_p, truncation=body.truncation or "disabled", usage=usage,
            text={"format": body.text.format.model_dump(mode="json", exclude_none=True, by_alias=True)}
            if body.text and body.text.format else {"format": {"type": "text"}},
            tool_choice=body.tool_choice.model_dump() if isinstance(body.tool_choice, FunctionChoice)
            else body.tool_choice or "auto",
            tools=[_function_tool(tool) for tool in body.function_tools()], user=body.user, metadata=body.metadata or {})

    def finished(self, result: ChatResult) -> ResponseObject:
        output = [self.reasoning(result.thinking)] if result.thinking and self.thoughts else []
        status = "incomplete" if result.done_reason == "length" and not result.tool_calls else "completed"
        if result.content or not result.tool_calls:
            output.append(self.message(result.content, status))
        output += [self.call(call) for call in result.tool_calls]
        return self.response(result.model, status, output, usage=usage(result))

    def reasoning(self, text: str) -> dict:
        return {"type": "reasoning", "id": f"rs_{self.id[5:]}", "summary": [],
                "content": [{"type": "reasoning_text", "text": text}]}

    def message(self, text: str, status: str = "completed") -> dict:
        return {"type": "message", "id": f"msg_{self.id[5:]}", "status": status, "role": "assistant",
                "content": [_text_part(text)]}

    @staticmethod
    def call(call: ToolCall, status: str = "completed", arguments: str | None = None) -> dict:
        return {"type": "function_call", "id": f"fc_{call.id}", "call_id": call.id, "name": call.name,
                "arguments": json.dumps(dict(call.arguments)) if arguments is None else arguments, "status": status}


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_tool(tool: FunctionTool) -> dict:
    return {"type": "function", "name": tool.name, "description": tool.description,
            "parameters": tool.parameters, "strict": bool(tool.strict)}


def usage(result: ChatResult) -> ResponseUsage:
    return ResponseUsage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens,
                         total_tokens=result.total_tokens,
                         output_tokens_details=OutputTokensDetails(reasoning_tokens=result.thinking_tokens))


def keeper(body: ResponsesRequest, context: list[dict], kept: KeptResponses, user_id: str) -> Keep | None:
    """What keeps the answer with its conversation, when the request asks for it (`store`)."""
    if not body.store:
        return None
    return lambda response: kept.keep(user_id, response["id"], context=context, input=input_items(body),
                                      response=response)


def answer(result: ChatResult, body: ResponsesRequest, keep: Keep | None) -> ResponseObject:
    return _kept(Shaper.of(body, result.id, result.created).finished(result), keep)


def _kept(response: ResponseObject, keep: Keep | None) -> ResponseObject:
    if keep is not None:
        keep(response.model_dump(mode="json"))
    return response


class _Writer:
    """The events of one streamed response, numbered as they are written, and the output items
    they have opened so far: at most one open at a time, a reasoning or a message."""

    def __init__(self, shaper: Shaper) -> None:
        self.shaper, self.number, self.output = shaper, -1, []
        self.open: str | None = None
        self.text = ""

    def event(self, kind: str, **data: Any) -> str:
        self.number += 1
        return sse(json.dumps({"type": kind, "sequence_number": self.number, **data}, separators=(",", ":")),
                   event=kind)

    def piece(self, kind: str, text: str) -> Iterator[str]:
        """A piece of a reasoning or of the message, in the item of its kind (opened if need be)."""
        if self.open != kind:
            yield from self.opened(kind)
        self.text += text
        delta = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        yield self.event(delta, item_id=self.output[-1]["id"], output_index=len(self.output) - 1, content_index=0,
                         delta=text, **({} if kind == "reasoning" else {"logprobs": []}))

    def opened(self, kind: str) -> Iterator[str]:
        """The open item done, and a new one of `kind` added."""
        yield from self.close()
        shaper, index = self.shaper, len(self.output)
        item = {**shaper.reasoning(""), "content": []} if kind == "reasoning" else {
            **shaper.message(""), "status": "in_progress", "content": []}
        self.output.append(item)
        self.open, self.text = kind, ""
        yield self.event("response.output_item.added", output_index=index, item=item)
        if kind == "message":
            yield self.event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                             part=_text_part(""))

    def close(self) -> Iterator[str]:
        """The open item, done."""
        if self.open is None:
            return
        index, text = len(self.output) - 1, self.text
        item_id = self.output[index]["id"]
        if self.open == "reasoning":
            yield self.event("response.reasoning_text.done", item_id=item_id, output_index=index, content_index=0,
                             text=text)
            self.output[index] = self.shaper.reasoning(text)
        else:
            yield self.event("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                             text=text, logprobs=[])
            yield self.event("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                             part=_text_part(text))
            self.output[index] = self.shaper.message(text)
        self.open = None
        yield self.event("response.output_item.done", output_index=index, item=self.output[index])

    def call(self, call: ToolCall) -> Iterator[str]:
        """A function call as the Responses API streams one: added with its name, its arguments, done."""
        index, done = len(self.output), self.shaper.call(call)
        self.output.append(done)
        yield self.event("response.output_item.added", output_index=index, item=self.shaper.call(call, "in_progress", ""))
        yield self.event("response.function_call_arguments.delta", item_id=done["id"], output_index=index,
                         delta=done["arguments"])
        yield self.event("response.function_call_arguments.done", item_id=done["id"], name=call.name,
                         output_index=index, arguments=done["arguments"])
        yield self.event("response.output_item.done", output_index=index, item=done)


def event_stream(stream: ChatStream, body: ResponsesRequest, keep: Keep | None) -> Iterator[str]:
    """The Responses API's events as the model produces the answer: created and in progress, then
    an output item for the reasoning (when asked about), the message and each function call, each
    added, its deltas and done, then completed (incomplete when the output ran out of tokens). An
    answer cut off ends with response.failed, after what was generated."""
    shaper = Shaper.of(body, stream.id, stream.created)
    writer = _Writer(shaper)
    started = shaper.response(stream.model, "in_progress", []).model_dump(mode="json")
    yield writer.event("response.created", response=started)
    yield writer.event("response.in_progress", response=started)
    try:
        for piece in stream:
            if isinstance(piece, Thought):
                yield from writer.piece("reasoning", piece.text) if shaper.thoughts else ()
            else:
                yield from writer.piece("message", piece)
    except InferGateError as failure:
        failed = shaper.response(stream.model, "failed", writer.output,
                                 error=ResponseError(code="server_error", message=failure.message))
        yield writer.event("response.failed", response=failed.model_dump(mode="json"))
        return
    finally:
        stream.close()
    result = stream.result
    assert result is not None
    if writer.open != "message" and not result.tool_calls:  # an answer with no text still has its message
        yield from writer.opened("message")
    yield from writer.close()
    for call in result.tool_calls:
        yield from writer.call(call)
    final = _kept(shaper.finished(result), keep).model_dump(mode="json")
    final["output"] = writer.output  # the items as they were streamed, the same as the whole answer's
    yield writer.event("response.incomplete" if final["status"] == "incomplete" else "response.completed",
                       response=final)


# -- kept responses ------------------------------------------------------------------


def kept(found: KeptResponse) -> ResponseObject:
    return ResponseObject.model_validate(found.response)


def deleted(response_id: str) -> Deleted:
    return Deleted(id=response_id)


def item_list(app: App, found: KeptResponse) -> ItemList:
    """The kept response's input items, a page of them: newest first unless `order=asc`, after
    the item `after` names."""
    query = parse_query(app, ItemsQuery)
    items = list(found.input) if query.order == "asc" else list(reversed(found.input))
    if query.after is not None:
        ids = [item.get("id") for item in items]
        if query.after not in ids:
            raise InvalidRequest(f"after: no input item of this response is '{query.after}'", param="after")
        items = items[ids.index(query.after) + 1:]
    page = [dict(item) for item in items[:query.limit]]
    return ItemList(data=page, first_id=page[0]["id"] if page else None, last_id=page[-1]["id"] if page else None,
                    has_more=len(items) > query.limit)
