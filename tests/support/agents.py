"""Claude Code (`claude -p`) and Codex CLI (`codex exec`), run non-interactively against a gateway the way a
developer points them at one: Claude Code through Anthropic's Messages API (POST /v1/messages), Codex
through OpenAI's Responses API (POST /v1/responses). Nothing else leaves the machine: every update check,
telemetry, error report, plugin or connector sync either CLI makes on its own is turned off, and neither
retries, so one turn is one request to the gateway.

`make test` installs both into .e2e/agents (make .e2e/agents/.installed), at the versions that
tests/e2e/agents/package-lock.json pins, their linux binaries included.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.paths import ROOT

AGENTS = ROOT / ".e2e" / "agents"
CLAUDE = AGENTS / "node_modules" / ".bin" / "claude"
CODEX = AGENTS / "node_modules" / ".bin" / "codex"

# Claude Code's own calls home, each off (documented on Claude Code's environment variables page).
CLAUDE_OFFLINE = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # all of the below, and feature flags, release notes...
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "DISABLE_INSTALLATION_CHECKS": "1",
    "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",  # no side calls (titles, tips) to the gateway either
    "DO_NOT_TRACK": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}

# Codex's config.toml: the gateway as the only model provider, no approvals asked for, and its own calls
# home off (update check, analytics, feedback, OpenTelemetry export, the plugin marketplace it `git
# ls-remote`s on GitHub, the ChatGPT plugins and connectors it looks up).
CODEX_CONFIG = """\
model = {model}
model_provider = "infergate"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.infergate]
name = "InferGate"
base_url = {base_url}
env_key = "INFERGATE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[features]
plugins = false
remote_plugin = false
apps = false
"""


def _root(base_url: str) -> str:
    """The gateway's root URL, whether it came with the `/v1` the OpenAI SDKs want or without."""
    return base_url.rstrip("/").removesuffix("/v1")


def _environment(home: Path) -> dict[str, str]:
    """A clean environment: the caller's PATH and locale, the given HOME, and no proxy, so that each CLI
    reads no one's own settings and reaches the gateway directly."""
    kept = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "TMPDIR") if name in os.environ}
    return {**kept, "HOME": str(home), "TERM": "dumb", "NO_COLOR": "1", "NO_PROXY": "127.0.0.1,localhost,::1"}


def _installed(binary: Path) -> Path:
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: `make test` installs it (make .e2e/agents/.installed)")
    return binary


def run_claude(base_url: str, key: str, prompt: str, *, model: str, cwd: Path, home: Path,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """`claude -p PROMPT` in `cwd`, with `home` as HOME, against the gateway at `base_url` with `key` (sent as
    x-api-key) and `model` for every call it makes, main or background. The answer is on stdout."""
    home.mkdir(parents=True, exist_ok=True)
    environment = {
        **_environment(home), **CLAUDE_OFFLINE,
        "ANTHROPIC_BASE_URL": _root(base_url),
        "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
    }
    return subprocess.run([str(_installed(CLAUDE)), "-p", prompt], cwd=cwd, env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def run_codex(base_url: str, key: str, prompt: str, *, model: str, cwd: Path, home: Path,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """`codex exec PROMPT` in `cwd`, with `home` as HOME and `home`/.codex as CODEX_HOME, whose config.toml
    makes the gateway at `base_url` its model provider, with `key` (sent as a bearer token) and `model`.
    The final answer is on stdout; the transcript is on stderr."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    # A JSON string is a TOML basic string.
    config = CODEX_CONFIG.format(model=json.dumps(model), base_url=json.dumps(f"{_root(base_url)}/v1"))
    (codex_home / "config.toml").write_text(config)
    environment = {**_environment(home), "CODEX_HOME": str(codex_home), "INFERGATE_API_KEY": key}
    return subprocess.run([str(_installed(CODEX)), "exec", "--strict-config", "--skip-git-repo-check",
                           "--color", "never", prompt],
                          cwd=cwd, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
