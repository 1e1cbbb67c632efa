"""The published schemas the contract tests hold answers to, pinned with small hand-written instances.

OpenAI's are component schemas of its OpenAPI description (tests/data/openai/, read through
tests.support.openai_schemas); Anthropic's are the Python SDK's pydantic types (through
tests.support.anthropic_schemas). Each schema must accept a minimal answer of the shape InferGate
gives and refuse an obviously broken one, so a contract test's failure is the gateway's and not the
schema tooling's.
"""

import copy
import json
import re
import typing

import anthropic.types
import pytest

from tests.support import anthropic_schemas, openai_schemas
from tests.support.openai_schemas import assert_conforms, violations

# --- OpenAI: Responses API ---------------------------------------------------------------------

USAGE = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
         "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 19}
TEXT = {"type": "output_text", "text": "Hello.", "annotations": [], "logprobs": []}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [TEXT]}
FUNCTION_CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather",
                 "arguments": '{"city": "Paris"}', "status": "completed"}


def response(*, without=(), **changes):
    """A minimal Responses API answer: every field the schema requires, one message, one tool call."""
    body = {"id": "resp_1", "object": "response", "created_at": 1764892800, "status": "completed",
            "completed_at": 1764892801, "error": None, "incomplete_details": None, "instructions": None,
            "model": "smollm2-135m", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
            "metadata": {}, "temperature": 1.0, "top_p": 1.0,
            "output": [copy.deepcopy(MESSAGE), copy.deepcopy(FUNCTION_CALL)], "usage": copy.deepcopy(USAGE)}
    body.update(changes)
    for field in without:
        del body[field]
    return body


RESPONSE_REQUIRED = ["id", "object", "created_at", "error", "incomplete_details", "instructions", "model", "tools",
                     "output", "parallel_tool_calls", "metadata", "tool_choice", "temperature", "top_p"]


def test_a_minimal_response_conforms():
    assert_conforms("Response", response())


def test_the_fields_a_response_must_carry():
    """Pinned so that a newer description that requires more fails here, where it is easy to read."""
    (own,) = [part for part in openai_schemas.schemas()["Response"]["allOf"] if "required" in part]
    assert own["required"] == RESPONSE_REQUIRED
    for field in RESPONSE_REQUIRED:
        body = response()
        del body[field]
        assert violations("Response", body), field


@pytest.mark.parametrize("changes", [
    {"object": "chat.completion"},
    {"status": "done"},
    {"created_at": "today"},
    {"output": [{"type": "message", "role": "assistant", "content": [TEXT]}]},  # no id, no status
    {"output": [{**MESSAGE, "content": [{"type": "output_text", "text": "hi"}]}]},  # no annotations, logprobs
    {"output": [{**FUNCTION_CALL, "arguments": {"city": "Paris"}}]},  # arguments are a JSON string
    {"usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}},  # no details
    {"error": {"code": "oops", "message": "x"}},
    {"tool_choice": "sometimes"},
])
def test_broken_responses_do_not_conform(changes):
    assert violations("Response", response(**changes))


def test_a_failed_or_incomplete_response_conforms():
    assert_conforms("Response", response(status="failed", completed_at=None, output=[], without=["usage"],
                                         error={"code": "server_error", "message": "the model server failed"}))
    assert_conforms("Response", response(status="incomplete", completed_at=None,
                                         incomplete_details={"reason": "max_output_tokens"}))


def test_usage_may_be_left_out_but_not_null():
    """`usage` is not required, and the schema does not allow null for it (OpenAI's own stream sends
    `"usage": null` in response.created): a response without usage yet leaves the key out."""
    assert_conforms("Response", response(without=["usage"]))
    assert violations("Response", response(usage=None))


def in_progress():
    return response(status="in_progress", completed_at=None, output=[], without=["usage"])


STREAM = [
    ("ResponseCreatedEvent", {"type": "response.created", "response": in_progress()}),
    ("ResponseInProgressEvent", {"type": "response.in_progress", "response": in_progress()}),
    ("ResponseOutputItemAddedEvent", {"type": "response.output_item.added", "output_index": 0,
                                      "item": {**MESSAGE, "status": "in_progress", "content": []}}),
    ("ResponseContentPartAddedEvent", {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0,
                                       "content_index": 0, "part": {**TEXT, "text": ""}}),
    ("ResponseTextDeltaEvent", {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                                "content_index": 0, "delta": "Hel", "logprobs": []}),
    ("ResponseTextDoneEvent", {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0,
                               "content_index": 0, "text": "Hello.", "logprobs": []}),
    ("ResponseContentPartDoneEvent", {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0,
                                      "content_index": 0, "part": TEXT}),
    ("ResponseOutputItemDoneEvent", {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE}),
    ("ResponseOutputItemAddedEvent", {"type": "response.output_item.added", "output_index": 1,
                                      "item": {**FUNCTION_CALL, "arguments": "", "status": "in_progress"}}),
    ("ResponseFunctionCallArgumentsDeltaEvent", {"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                                                 "output_index": 1, "delta": '{"city": '}),
    ("ResponseFunctionCallArgumentsDoneEvent", {"type": "response.function_call_arguments.done", "item_id": "fc_1",
                                                "name": "get_weather", "output_index": 1,
                                                "arguments": '{"city": "Paris"}'}),
    ("ResponseOutputItemDoneEvent", {"type": "response.output_item.done", "output_index": 1, "item": FUNCTION_CALL}),
    ("ResponseReasoningTextDeltaEvent", {"type": "response.reasoning_text.delta", "item_id": "rs_1",
                                         "output_index": 0, "content_index": 0, "delta": "Let me"}),
    ("ResponseReasoningTextDoneEvent", {"type": "response.reasoning_text.done", "item_id": "rs_1",
                                        "output_index": 0, "content_index": 0, "text": "Let me think."}),
    ("ResponseCompletedEvent", {"type": "response.completed", "response": response()}),
    ("ResponseFailedEvent", {"type": "response.failed", "response": response(
        status="failed", completed_at=None, output=[], without=["usage"],
        error={"code": "server_error", "message": "the model server failed"})}),
    ("ResponseIncompleteEvent", {"type": "response.incomplete", "response": response(
        status="incomplete", completed_at=None, incomplete_details={"reason": "max_output_tokens"})}),
    ("ResponseErrorEvent", {"type": "error", "code": "server_error", "message": "the model server failed",
                            "param": None}),
]
STREAM = [(name, {**event, "sequence_number": number}) for number, (name, event) in enumerate(STREAM)]

EVENT_REQUIRED = {
    "ResponseCreatedEvent": ["type", "response", "sequence_number"],
    "ResponseInProgressEvent": ["type", "response", "sequence_number"],
    "ResponseOutputItemAddedEvent": ["type", "output_index", "item", "sequence_number"],
    "ResponseContentPartAddedEvent": ["type", "item_id", "output_index", "content_index", "part", "sequence_number"],
    "ResponseTextDeltaEvent": ["type", "item_id", "output_index", "content_index", "delta", "sequence_number",
                               "logprobs"],
    "ResponseTextDoneEvent": ["type", "item_id", "output_index", "content_index", "text", "sequence_number",
                              "logprobs"],
    "ResponseContentPartDoneEvent": ["type", "item_id", "output_index", "content_index", "part", "sequence_number"],
    "ResponseOutputItemDoneEvent": ["type", "output_index", "item", "sequence_number"],
    "ResponseFunctionCallArgumentsDeltaEvent": ["type", "item_id", "output_index", "delta", "sequence_number"],
    "ResponseFunctionCallArgumentsDoneEvent": ["type", "item_id", "name", "output_index", "arguments",
                                               "sequence_number"],
    "ResponseReasoningTextDeltaEvent": ["type", "item_id", "output_index", "content_index", "delta",
                                        "sequence_number"],
    "ResponseReasoningTextDoneEvent": ["type", "item_id", "output_index", "content_index", "text", "sequence_number"],
    "ResponseCompletedEvent": ["type", "response", "sequence_number"],
    "ResponseFailedEvent": ["type", "response", "sequence_number"],
    "ResponseIncompleteEvent": ["type", "response", "sequence_number"],
    "ResponseErrorEvent": ["type", "code", "message", "param", "sequence_number"],
}


@pytest.mark.parametrize(("name", "event"), STREAM, ids=[f"{n}-{e['sequence_number']}" for n, e in STREAM])
def test_each_stream_event_conforms_to_its_schema_and_to_the_union(name, event):
    assert_conforms(name, event)
    assert_conforms("ResponseStreamEvent", event)


@pytest.mark.parametrize(("name", "event"), STREAM, ids=[f"{n}-{e['sequence_number']}" for n, e in STREAM])
def test_an_event_is_held_to_the_schema_of_its_type(name, event):
    assert openai_schemas.stream_event_schema(event) == name


def test_an_event_of_no_known_type_is_held_to_the_whole_union():
    assert openai_schemas.stream_event_schema({"type": "response.text.delta"}) == "ResponseStreamEvent"
    assert openai_schemas.stream_event_schema("data") == "ResponseStreamEvent"


@pytest.mark.parametrize("name", sorted(EVENT_REQUIRED))
def test_the_fields_each_stream_event_must_carry(name):
    assert openai_schemas.schemas()[name]["required"] == EVENT_REQUIRED[name]
    assert {"$ref": f"#/components/schemas/{name}"} in [
        {"$ref": branch["$ref"]} for branch in openai_schemas.schemas()["ResponseStreamEvent"]["anyOf"]]
    event = next(event for n, event in STREAM if n == name)
    for field in EVENT_REQUIRED[name]:
        broken = {key: value for key, value in event.items() if key != field}
        assert violations(name, broken), field
        assert violations("ResponseStreamEvent", broken), field


@pytest.mark.parametrize("event", [
    {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "delta": "Hel", "logprobs": [], "sequence_number": "1"},
    {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel",
     "sequence_number": 1},  # logprobs are required, even empty
    {"type": "response.text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel",
     "logprobs": [], "sequence_number": 1},
    {"type": "response.completed", "response": {"id": "resp_1"}, "sequence_number": 9},
    {"type": "error", "message": "failed", "sequence_number": 3},
])
def test_broken_stream_events_do_not_conform(event):
    assert violations("ResponseStreamEvent", event)


def test_the_input_items_list_conforms():
    listing = {"object": "list", "has_more": False, "first_id": "msg_0", "last_id": "fc_1",
               "data": [{"id": "msg_0", "type": "message", "role": "user", "status": "completed",
                         "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                        MESSAGE, FUNCTION_CALL]}
    assert_conforms("ResponseItemList", listing)
    assert violations("ResponseItemList", {**listing, "data": [{**FUNCTION_CALL, "status": None}]})
    assert violations("ResponseItemList", {key: v for key, v in listing.items() if key != "first_id"})


# --- OpenAI: legacy completions, errors -------------------------------------------------------------

def completion(**changes):
    body = {"id": "cmpl-1", "object": "text_completion", "created": 1764892800, "model": "smollm2-135m",
            "choices": [{"text": "Hello.", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    body.update(changes)
    return body


def test_a_completion_conforms():
    assert_conforms("CreateCompletionResponse", completion())
    assert_conforms("CreateCompletionResponse", completion(choices=[
        {"text": "", "index": 0, "finish_reason": "length",
         "logprobs": {"tokens": ["Hi"], "token_logprobs": [-0.1], "text_offset": [0], "top_logprobs": [{"Hi": -0.1}]}}]))
    # A streamed chunk has the same shape (usage is optional).
    assert_conforms("CreateCompletionResponse", {key: v for key, v in completion().items() if key != "usage"})


@pytest.mark.parametrize("changes", [
    {"object": "chat.completion"},
    {"choices": [{"text": "Hello.", "index": 0, "finish_reason": "stop"}]},  # logprobs must be there, maybe null
    {"choices": [{"text": "Hello.", "index": 0, "logprobs": None, "finish_reason": "eos"}]},
    {"choices": [{"message": {"role": "assistant", "content": "Hello."}, "index": 0, "logprobs": None,
                  "finish_reason": "stop"}]},
    {"created": "1764892800"},
])
def test_broken_completions_do_not_conform(changes):
    assert violations("CreateCompletionResponse", completion(**changes))


def test_a_completion_chunk_may_not_have_a_null_finish_reason():
    """The published schema has no null `finish_reason`, although OpenAI's own stream sends one on every
    chunk but the last: a chunk held to CreateCompletionResponse must carry a finish reason."""
    chunk = completion(choices=[{"text": "Hel", "index": 0, "logprobs": None, "finish_reason": None}])
    assert violations("CreateCompletionResponse", chunk)


def test_an_error_conforms():
    assert_conforms("ErrorResponse", {"error": {"message": "no such model", "type": "invalid_request_error",
                                                "param": "model", "code": "model_not_found"}})
    assert_conforms("ErrorResponse", {"error": {"message": "x", "type": "server_error", "param": None, "code": None}})
    assert violations("ErrorResponse", {"error": {"message": "x", "type": "server_error"}})  # param, code required
    assert violations("ErrorResponse", {"message": "x"})


def test_every_vendored_schema_compiles_and_refs_resolve():
    names = ["Response", "ResponseStreamEvent", "ResponseItemList", "CreateCompletionResponse", "ErrorResponse",
             "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", *EVENT_REQUIRED]
    for name in names:
        openai_schemas.validator(name)
    # CompoundFilter refers to itself in draft 2019-09's way; it must become a working $ref.
    nested = {"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1},
                                         {"type": "or", "filters": [{"type": "eq", "key": "b", "value": "x"}]}]}
    assert_conforms("CompoundFilter", nested)
    assert violations("CompoundFilter", {"type": "and", "filters": [{"type": "or", "filters": "none"}]})


# --- Anthropic: Messages API, by the SDK's types -------------------------------------------------------

def message(**changes):
    """A minimal Messages API answer: text, then a tool call."""
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "smollm2-135m",
            "content": [{"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 7}}
    body.update(changes)
    return body


def test_a_minimal_message_conforms():
    anthropic_schemas.assert_message(message())
    anthropic_schemas.assert_message(message(content=[{"type": "thinking", "thinking": "Hm.", "signature": "c2ln"},
                                                      {"type": "text", "text": "Hi."}], stop_reason="end_turn"))


def test_the_fields_a_message_must_carry():
    """The SDK requires these; `stop_reason` and `stop_sequence` it types `Optional[...] = None`, though
    the API always sends them (null in message_start)."""
    required = [key for key, field in anthropic_schemas._fields(anthropic_schemas.Message).items()
                if field.is_required()]
    assert sorted(required) == ["content", "id", "model", "role", "type", "usage"]
    for field in required:
        body = message()
        del body[field]
        assert anthropic_schemas.violations(anthropic_schemas.Message, body) == [f"$.{field}: Field required: "
                                                                                 + json.dumps(body)[:200]]


@pytest.mark.parametrize(("changes", "named"), [
    ({"role": "user"}, "$.role: Input should be 'assistant'"),
    ({"type": "chat.completion"}, "$.type: Input should be 'message'"),
    ({"stop_reason": "eos"}, "$.stop_reason: Input should be 'end_turn'"),
    ({"usage": {"input_tokens": "12", "output_tokens": 7}}, "$.usage.input_tokens: Input should be a valid integer"),
    ({"usage": {"input_tokens": 12.0, "output_tokens": 7}}, "$.usage.input_tokens: Input should be a valid integer"),
    ({"usage": {"input_tokens": 12}}, "$.usage.output_tokens: Field required"),
    ({"usage": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}},
     "$.usage.total_tokens: not a field of the SDK's Usage"),
    ({"content": [{"type": "text", "text": 5}]}, "$.content[0].text: Input should be a valid string (as TextBlock)"),
    ({"content": [{"type": "text"}]}, "$.content[0].text: Field required (as TextBlock)"),
    ({"content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": "{}"}]},
     "$.content[0].input: Input should be an object (as ToolUseBlock)"),
    ({"content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "arguments": "{}"}]},
     "$.content[0].input: Field required (as ToolUseBlock)"),
    ({"content": [{"type": "tool_call", "id": "toolu_1"}]}, "$.content[0].type: missing or none of the types"),
    ({"content": [{"type": "text", "text": "hi", "index": 0}]}, "$.content[0].index: not a field of the SDK's TextBlock"),
    ({"choices": []}, "$.choices: not a field of the SDK's Message"),
])
def test_broken_messages_are_refused_naming_the_path(changes, named):
    found = anthropic_schemas.violations(anthropic_schemas.Message, message(**changes))
    assert any(line.startswith(named) for line in found), found
    with pytest.raises(AssertionError, match=re.escape(named)):
        anthropic_schemas.assert_message(message(**changes))


def test_a_message_that_is_no_object_is_refused():
    with pytest.raises(AssertionError, match="not a JSON object"):
        anthropic_schemas.assert_message([message()])


STARTED = message(content=[], stop_reason=None, stop_sequence=None, usage={"input_tokens": 12, "output_tokens": 1})
EVENTS = [
    {"type": "message_start", "message": STARTED},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me look."}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
]


@pytest.mark.parametrize("event", EVENTS, ids=[f"{i}-{e['type']}" for i, e in enumerate(EVENTS)])
def test_each_streamed_event_conforms(event):
    anthropic_schemas.assert_event(event)
    anthropic_schemas.assert_event(event, name=event["type"])


def test_the_events_cover_the_sdks_stream_union():
    sdk = {tag for member in typing.get_args(typing.get_args(anthropic.types.RawMessageStreamEvent)[0])
           for tag in anthropic_schemas._tags(member)}
    assert sdk == {"message_start", "message_delta", "message_stop", "content_block_start", "content_block_delta",
                   "content_block_stop"}
    assert set(anthropic_schemas.EVENTS) == sdk | {"ping", "error"}
    assert {event["type"] for event in EVENTS} == set(anthropic_schemas.EVENTS)


@pytest.mark.parametrize(("event", "named"), [
    ({"type": "message_start", "message": {**STARTED, "content": [{"type": "text"}]}},
     "$.message.content[0].text: Field required"),
    ({"type": "message_start", "message": {**STARTED, "usage": {"output_tokens": 1}}},
     "$.message.usage.input_tokens: Field required"),
    ({"type": "content_block_start", "content_block": {"type": "text", "text": ""}}, "$.index: Field required"),
    ({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": [{}]}},
     "$.content_block.citations[0].type: missing or none of the types"),
    ({"type": "content_block_delta", "index": "0", "delta": {"type": "text_delta", "text": "x"}},
     "$.index: Input should be a valid integer"),
    ({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "partial_json": "x"}},
     "$.delta.text: Field required (as TextDelta)"),
    ({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "partial_json": "x"}},
     "$.delta.partial_json: not a field of the SDK's TextDelta"),
    ({"type": "content_block_delta", "index": 0, "delta": {"type": "text", "text": "x"}},
     "$.delta.type: missing or none of the types this union allows ('text_delta', 'input_json_delta'"),
    ({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "text": "x"}},
     "$.delta.thinking: Field required (as ThinkingDelta)"),
    ({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta"}},
     "$.delta.signature: Field required (as SignatureDelta)"),
    ({"type": "content_block_stop"}, "$.index: Field required"),
    ({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}, "$.usage: Field required"),
    ({"type": "message_delta", "delta": {"stop_reason": "eos"}, "usage": {"output_tokens": 7}},
     "$.delta.stop_reason: Input should be 'end_turn'"),
    ({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7, "total_tokens": 9}},
     "$.usage.total_tokens: not a field of the SDK's MessageDeltaUsage"),
    ({"type": "message_stop", "message": STARTED}, "$.message: not a field of the SDK's RawMessageStopEvent"),
    ({"type": "ping", "at": 1}, "$.at: not a field of Ping"),
    ({"type": "error", "error": {"type": "overloaded", "message": "x"}},
     "$.error.type: missing or none of the types this union allows"),
    ({"type": "error", "message": "x"}, "$.error: Field required"),
    ({"type": "message_end"}, '$.type: "message_end" is no event type'),
])
def test_broken_events_are_refused_naming_the_path(event, named):
    found = anthropic_schemas.event_violations(event)
    assert any(line.startswith(named) for line in found), found
    with pytest.raises(AssertionError, match=re.escape(named)):
        anthropic_schemas.assert_event(event)


def test_an_events_sse_name_must_be_its_type():
    with pytest.raises(AssertionError, match="SSE event name 'message_delta' is not the event's type 'message_stop'"):
        anthropic_schemas.assert_event({"type": "message_stop"}, name="message_delta")


def test_errors_conform():
    for kind in ["invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                 "rate_limit_error", "api_error", "overloaded_error", "timeout_error", "billing_error"]:
        anthropic_schemas.assert_error({"type": "error", "error": {"type": kind, "message": "x"}})
    anthropic_schemas.assert_error({"type": "error", "error": {"type": "not_found_error", "message": "x"},
                                    "request_id": "req_1"})


@pytest.mark.parametrize(("body", "named"), [
    ({"error": {"type": "invalid_request_error", "message": "x"}}, "$.type: Field required"),
    ({"type": "error", "error": {"type": "bad_request", "message": "x"}}, "$.error.type: missing or none of the types"),
    ({"type": "error", "error": {"type": "api_error"}}, "$.error.message: Field required (as APIErrorObject)"),
    ({"type": "error", "error": {"type": "api_error", "message": "x", "code": 500}},
     "$.error.code: not a field of the SDK's APIErrorObject"),
    ({"type": "error", "error": {"type": "api_error", "message": "x"}, "status": 500},
     "$.status: not a field of the SDK's ErrorResponse"),
    ({"error": {"message": "x", "type": "server_error", "param": None, "code": None}}, "$.type: Field required"),
])
def test_broken_errors_are_refused_naming_the_path(body, named):
    with pytest.raises(AssertionError, match=re.escape(named)):
        anthropic_schemas.assert_error(body)


def test_token_counts():
    anthropic_schemas.assert_count({"input_tokens": 14})
    for body, named in [({}, "$.input_tokens: Field required"),
                        ({"input_tokens": "14"}, "$.input_tokens: Input should be a valid integer"),
                        ({"input_tokens": 14.5}, "$.input_tokens: Input should be a valid integer"),
                        ({"input_tokens": 14, "output_tokens": 0},
                         "$.output_tokens: not a field of the SDK's MessageTokensCount")]:
        with pytest.raises(AssertionError, match=re.escape(named)):
            anthropic_schemas.assert_count(body)
