"""The APIs coding agents speak, through the chat function: OpenAI's legacy completions (with
fill-in-the-middle) and Anthropic's Messages, metered as chats are (the SDKs and the agents
themselves are in tests/e2e)."""

from __future__ import annotations

import json

from tests.handlers.conftest import body, header

MESSAGES = "/v1/messages"
CLAUDE_CODE_LIKE = {
    "model": "smollm2:135m", "max_tokens": 32000, "stream": False,
    "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "ping", "cache_control": {"type": "ephemeral"}}]}],
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
    "tools": [
        {"name": "Bash", "description": "Runs a command", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
        {"name": "Lookup", "description": "Finds a thing", "defer_loading": True,
         "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
}


def events_of(text: str) -> list[tuple[str, dict]]:
    found = []
    for block in filter(None, text.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_completions_fill_in_the_middle_and_are_metered(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/completions", key=key, body={
        "model": "smollm2:135m", "prompt": "def add(a, b):", "suffix": "return c", "max_tokens": 20})
    assert response["statusCode"] == 200, body(response)
    answer = body(response)
    assert answer["object"] == "text_completion" and answer["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == answer["usage"]["total_tokens"]


def test_completions_refuse_what_they_cannot_do_naming_the_field(api):
    key = api.register()["api_key"]
    for field, value in (("echo", True), ("best_of", 2), ("n", 2), ("logprobs", 1)):
        response = api.call("POST", "/v1/completions", key=key, body={"model": "smollm2:135m", "prompt": "x", field: value})
        assert response["statusCode"] == 400, (field, body(response))
        assert body(response)["error"]["param"] == field


def test_a_message_as_claude_code_sends_it_is_answered_and_reports_what_was_not_applied(api):
    key = api.register()["api_key"]
    response = api.call("POST", MESSAGES, key=key, body=CLAUDE_CODE_LIKE,
                        headers={"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,oauth-2025-04-20"})
    assert response["statusCode"] == 200, body(response)
    answer = body(response)
    assert answer["type"] == "message" and answer["content"][-1] == {"type": "text", "text": "You said: ping"}
    assert answer["stop_reason"] == "end_turn"
    ignored = header(response, "InferGate-Ignored").split(", ")
    assert {"thinking", "tools.web_search", "context_management", "cache_control"} <= set(ignored)
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"]


def test_a_streamed_message_is_anthropics_events_in_order(api):
    key = api.register()["api_key"]
    response = api.call("POST", MESSAGES, key=key, body={**CLAUDE_CODE_LIKE, "stream": True})
    assert response["statusCode"] == 200
    kinds = [kind for kind, _ in events_of(response["body"])]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_errors_are_in_anthropics_shape(api):
    key = api.register()["api_key"]
    response = api.call("POST", MESSAGES, key=key, body={"model": "smollm2:135m", "messages": []})
    assert response["statusCode"] == 400
    error = body(response)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    forced = api.call("POST", MESSAGES, key=key, body={**CLAUDE_CODE_LIKE, "tool_choice": {"type": "tool", "name": "web_search"}})
    assert forced["statusCode"] == 400 and "tool_choice" in body(forced)["error"]["message"]


def test_count_tokens_is_the_bound_held_and_not_metered(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/messages/count_tokens", key=key, body={
        key_: value for key_, value in CLAUDE_CODE_LIKE.items() if key_ not in ("max_tokens", "stream", "metadata")})
    assert response["statusCode"] == 200, body(response)
    assert body(response)["input_tokens"] > 0
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_used"] == 0


def test_what_claude_code_sent_is_answered(api):
    """A body as Claude Code 2.1 sent it (a system message among the messages, adaptive thinking
    with its display omitted, output_config's effort), shortened."""
    key = api.register()["api_key"]
    sent = {**CLAUDE_CODE_LIKE, "stream": True, "thinking": {"type": "adaptive", "display": "omitted"},
            "output_config": {"effort": "high"},
            "messages": [*CLAUDE_CODE_LIKE["messages"], {"role": "system", "content": [
                {"type": "text", "text": "<env>cwd: /tmp</env>", "cache_control": {"type": "ephemeral"}}]}]}
    response = api.call("POST", MESSAGES, query={"beta": "true"}, key=key, body=sent, headers={
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,a-future-beta-2027-01-01"})
    assert response["statusCode"] == 200, response["body"]
    ignored = header(response, "InferGate-Ignored").split(", ")
    assert {"output_config.effort", "anthropic-beta.a-future-beta-2027-01-01"} <= set(ignored)


CODEX_LIKE = {
    "model": "smollm2:135m", "instructions": None, "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "session-1", "client_metadata": {"session_id": "session-1"},
    "input": [
        {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
        {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "ping"}]},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Runs a command", "strict": False,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Agents", "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Spawns", "strict": False,
             "parameters": {"type": "object", "properties": {}}}]},
        {"type": "web_search", "external_web_access": False},
    ],
}


def test_a_response_as_codex_asks_for_it_is_answered_and_reports_what_was_not_applied(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/responses", key=key, body=CODEX_LIKE)
    assert response["statusCode"] == 200, body(response)
    answer = body(response)
    assert answer["status"] == "completed" and answer["output"][-1]["content"][0]["text"] == "You said: ping"
    assert [tool["name"] for tool in answer["tools"]] == ["exec_command", "spawn_agent"], "a namespace is its functions"
    ignored = set(header(response, "InferGate-Ignored").split(", "))
    assert ignored == {"tools.web_search", "reasoning.summary", "include", "prompt_cache_key", "client_metadata"}
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["tokens_used"] == answer["usage"]["total_tokens"]
    assert api.call("GET", f"/v1/responses/{answer['id']}", key=key)["statusCode"] == 404, "store: false keeps nothing"


def test_a_kept_response_continues_its_conversation_for_its_user_only(api):
    key, other = api.register()["api_key"], api.register("eve@example.com")["api_key"]
    first = body(api.call("POST", "/v1/responses", key=key, body={"model": "smollm2:135m", "input": "one two"}))
    second = api.call("POST", "/v1/responses", key=key, body={
        "model": "smollm2:135m", "input": "three", "previous_response_id": first["id"]})
    assert second["statusCode"] == 200, body(second)
    # The model reads the conversation again: its tokens are prompt tokens again.
    assert body(second)["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    assert body(api.call("GET", f"/v1/responses/{first['id']}", key=key)) == first
    items = body(api.call("GET", f"/v1/responses/{first['id']}/input_items", key=key))
    assert [item["content"][0]["text"] for item in items["data"]] == ["one two"]
    for method, path in (("GET", ""), ("GET", "/input_items"), ("DELETE", "")):
        assert api.call(method, f"/v1/responses/{first['id']}{path}", key=other)["statusCode"] == 404
    stolen = api.call("POST", "/v1/responses", key=other, body={
        "model": "smollm2:135m", "input": "x", "previous_response_id": first["id"]})
    assert stolen["statusCode"] == 404 and body(stolen)["error"]["code"] == "response_not_found"
    assert api.call("DELETE", f"/v1/responses/{first['id']}", key=key)["statusCode"] == 200
    assert api.call("GET", f"/v1/responses/{first['id']}", key=key)["statusCode"] == 404


def test_a_streamed_response_is_the_event_sequence_numbered(api):
    key = api.register()["api_key"]
    response = api.call("POST", "/v1/responses", key=key, body={**CODEX_LIKE, "stream": True})
    assert response["statusCode"] == 200
    events = events_of(response["body"])
    assert [kind for kind, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert body(api.call("GET", "/v1/usage", key=key))["tokens_used"] == final["usage"]["total_tokens"]


def test_responses_refuse_what_they_cannot_do_naming_the_field(api):
    key = api.register()["api_key"]
    for changes, field in (({"tool_choice": {"type": "web_search"}}, "tool_choice"), ({"background": True}, "background"),
                           ({"top_logprobs": 2}, "top_logprobs"), ({"include": ["message.output_text.logprobs"]}, "include"),
                           ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0.type")):
        response = api.call("POST", "/v1/responses", key=key, body={**CODEX_LIKE, **changes})
        assert response["statusCode"] == 400, (changes, body(response))
        assert body(response)["error"]["param"] == field, body(response)


def test_chat_completions_accept_the_service_tiers_that_ask_nothing_and_name_every_refused_field(api):
    key = api.register()["api_key"]
    chat = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}]}
    for tier in ("auto", "default"):
        assert api.call("POST", "/v1/chat/completions", key=key, body={**chat, "service_tier": tier})["statusCode"] == 200
    refused = {"service_tier": "flex", "store": True, "n": 2, "logprobs": True, "top_logprobs": 2,
               "logit_bias": {"1": 1}, "modalities": ["text", "audio"], "prediction": {"type": "content"},
               "audio": {"voice": "x"}, "functions": [{"name": "f"}], "web_search_options": {"size": "low"}}
    for field, value in refused.items():
        response = api.call("POST", "/v1/chat/completions", key=key, body={**chat, field: value})
        assert response["statusCode"] == 400 and body(response)["error"]["param"] == field, (field, body(response))
    required = api.call("POST", "/v1/chat/completions", key=key, body={**chat, "tool_choice": "required"})
    assert body(required)["error"]["param"] == "tool_choice"


def test_an_ignored_hint_named_from_the_body_reaches_the_header_percent_encoded(api):
    """A hosted tool's name is the client's: InferGate-Ignored carries it whole and ASCII (a header
    that cannot be encoded would cut the connection before any answer)."""
    key = api.register("ignored-header@example.com")["api_key"]
    counted = api.call("POST", "/v1/messages/count_tokens", key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": {}}, {"name": "Ā, x\r\ny", "type": "web_search_20250305"}]})
    assert counted["statusCode"] == 200, counted["body"]
    assert header(counted, "InferGate-Ignored") == "tools.%C4%80%2C%20x%0D%0Ay"
