"""Claude Code itself (`claude -p`, tests/support/agents.py), pointed at `make run` as a developer points it at
a gateway (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY), finishes a one-line task through POST /v1/messages.

Claude Code asks for its own model names; the gateway's MODEL_ALIASES maps its defaults (Opus, Sonnet and
Haiku 5.5) to smollm2:135m. Its request is as it sends it to Anthropic: a prompt of about 49 KB (its system
prompt, twelve tools, an environment given as a `system` message), max_tokens 128000, adaptive thinking,
an effort for the request and one for the turn, context management, cache_control marks, and its betas.
The gateway's plan here holds such a prompt (its bound is about a token a byte) beside the most a plan lets
an answer take (4096 tokens: the gateway caps Claude Code's max_tokens to it). The hints a self-hosted model
cannot apply are accepted and named on the access line.

The model server is the deterministic one: it answers "You said: " and the last user message, and it calls
each offered tool that message names, so the task names none of Claude Code's tools (Agent, Bash, Edit,
Read, Write, Skill, Workflow, ToolSearch, ...) and Claude Code takes the answer as its last word.

Claude Code answers a 400 by asking again with fewer of its features (fewer betas, thinking shown, its
tools no longer deferred), so a refusal of something it sends costs several requests and a degraded
session without failing it: every request it makes here must be answered 200.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.agents import run_claude
from tests.support.waiting import wait_for

DEFAULTS = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")
TASK = "Reply with the single word OK"
# A plan for a coding agent: a prompt bound at ~50,000 tokens and the longest answer a plan allows, in a minute.
AGENTS = {"monthly_token_quota": 5_000_000, "rate_limit_rpm": 60, "rate_limit_tpm": 200_000,
          "max_output_tokens": 4096}


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("claude-code", MODEL_ALIASES=json.dumps({name: ["smollm2:135m"] for name in DEFAULTS}),
                      PLANS=json.dumps({"agents": AGENTS}), DEFAULT_PLAN="agents")


@pytest.fixture
def account(gateway) -> dict:
    return gateway.register()


def claude(gateway, account: dict, tmp_path, model: str):
    (tmp_path / "work").mkdir()
    return run_claude(gateway.url, account["api_key"], TASK, model=model, cwd=tmp_path / "work", home=tmp_path / "home")


def access_lines(gateway, user_id: str) -> list[dict]:
    """The access lines of the user's requests, in the order they were written."""
    lines = []
    for text in gateway.output().splitlines():
        if text.startswith("{") and user_id in text:
            line = json.loads(text)
            if line.get("message") == "request" and line.get("user_id") == user_id:
                lines.append(line)
    return lines


def usage(gateway, key: str) -> dict:
    response = httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("model", DEFAULTS)
def test_claude_code_finishes_a_one_line_task_metered(gateway, account, tmp_path, model):
    result = claude(gateway, account, tmp_path, model)
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    answer = result.stdout.strip()
    assert answer.startswith("You said: ") and answer.endswith(TASK), answer

    # Its last request was answered (it has its answer): its line, and those of any before it, are written.
    lines = wait_for(lambda: (lines := access_lines(gateway, account["user_id"])) and lines[-1]["status"] == 200
                     and lines, timeout=30, what="the access line of Claude Code's answered request")
    refused = [line for line in lines if line["status"] != 200]
    assert not refused, f"the gateway refused what Claude Code sent: {refused}"
    assert {(line["method"], line["route"]) for line in lines} == {("POST", "/v1/messages")}
    for line in lines:
        assert (line["outcome"], line["model"]) == ("ok", "smollm2:135m")
        # Its ~49 KB prompt; the deterministic model counts its words.
        assert line["prompt_tokens"] > 5000 and line["completion_tokens"] > 0
        ignored = set(line["ignored"])
        assert {"cache_control", "context_management", "output_config.effort", "messages.output_config.effort",
                "tools.defer_loading", "thinking"} <= ignored, ignored
        assert not [hint for hint in ignored if hint.startswith("anthropic-beta.")], "a beta the gateway does not know"

    standing = usage(gateway, account["api_key"])
    assert standing["requests"] == len(lines) >= 1
    assert standing["tokens_used"] == sum(line["prompt_tokens"] + line["completion_tokens"] for line in lines) > 0
    assert standing["tokens_reserved"] == 0
    assert set(standing["by_model"]) == {"smollm2:135m"}


def test_a_model_name_no_alias_maps_is_refused_in_claude_codes_words(gateway, account, tmp_path):
    """Without an alias, Claude Code's model is no model of the gateway's: it shows the gateway's 400 (after
    asking again with fewer features, each time refused alike), and nothing is charged."""
    result = claude(gateway, account, tmp_path, "claude-opus-4-8")
    assert result.returncode != 0
    assert "400" in result.stdout and "Model 'claude-opus-4-8' is not available on this gateway." in result.stdout
    lines = wait_for(lambda: access_lines(gateway, account["user_id"]), timeout=30, what="the access lines")
    assert {(line["route"], line["status"], line["outcome"]) for line in lines} == {
        ("/v1/messages", 400, "model_not_found")}
    standing = usage(gateway, account["api_key"])
    assert (standing["requests"], standing["tokens_used"]) == (0, 0)
