"""Codex CLI itself (`codex exec`, tests/support/agents.py), unchanged, pointed at the gateway through
`make run` as a developer points it at one: a model provider with `wire_api = "responses"`, so every
turn is a POST /v1/responses, streamed.

Codex's prompt is large (its instructions and the schemas of its tools, some 40 KB), and a prompt's
bound is about one token a byte, so the gateway's free plan is given room for it (PLANS). The model
server is the deterministic one: it calls each offered tool the last user message names, so the task
names none of Codex's tools (exec_command, write_stdin, request_user_input, view_image, spawn_agent, ...),
and the answer is "You said: " and the task.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.agents import run_codex
from tests.support.waiting import wait_for

MODEL = "smollm2:135m"
TASK = "Reply with one short friendly greeting."
# Room for Codex's prompt: a minute's tokens and a month's well beyond its ~40,000-token bound.
PLANS = {"free": {"rate_limit_tpm": 1_000_000, "monthly_token_quota": 10_000_000, "max_output_tokens": 4096}}


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("codex", PLANS=json.dumps(PLANS))


@pytest.fixture(scope="module")
def account(gateway) -> dict:
    return gateway.register()


@pytest.fixture(scope="module")
def codex(gateway, account, tmp_path_factory):
    """Codex's run of the task, in a folder of its own, with a home of its own."""
    folder = tmp_path_factory.mktemp("codex")
    (folder / "work").mkdir()
    return run_codex(gateway.url, account["api_key"], TASK, model=MODEL, cwd=folder / "work", home=folder / "home")


def responses_lines(gateway) -> list[dict]:
    """The access lines of the gateway's POST /v1/responses requests, in the order they were written."""
    return [line for line in gateway.json_log()
            if line.get("message") == "request" and line.get("route") == "/v1/responses"]


def test_codex_finishes_the_task_with_the_models_answer(codex):
    assert codex.returncode == 0, f"codex exited {codex.returncode}:\n{codex.stderr[-4000:]}"
    assert codex.stdout.strip() == f"You said: {TASK}", codex.stderr[-4000:]


def test_codex_s_requests_are_metered(gateway, account, codex):
    assert codex.returncode == 0, codex.stderr[-4000:]

    def settled() -> tuple[dict, list[dict]] | None:
        """The user's usage and the access lines of Codex's requests, once each request is charged and logged."""
        usage = httpx.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {account['api_key']}"},
                          timeout=30).json()
        lines = responses_lines(gateway)
        return (usage, lines) if usage["tokens_reserved"] == 0 and usage["requests"] == len(lines) >= 1 else None

    usage, lines = wait_for(settled, timeout=30, what="Codex's requests charged and logged")
    assert usage["tokens_used"] == sum(line["prompt_tokens"] + line["completion_tokens"] for line in lines) > 0
    assert all((line["status"], line["outcome"], line["user_id"], line["model"]) == (
        200, "ok", account["user_id"], MODEL) for line in lines), lines
    # Codex read the usage the gateway reported as the tokens it used: the tokens the gateway charged.
    assert f"tokens used\n{usage['tokens_used']:,}\n" in codex.stderr, codex.stderr[-2000:]


def test_the_access_line_names_what_codex_asked_that_was_not_applied(gateway, codex):
    assert codex.returncode == 0, codex.stderr[-4000:]
    [first, *_] = wait_for(lambda: responses_lines(gateway), timeout=30, what="the access line of Codex's request")
    assert {"tools.web_search", "reasoning.summary", "include", "prompt_cache_key", "client_metadata"} <= set(
        first["ignored"]), first
