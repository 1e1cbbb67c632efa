"""LiteLLM's proxy as the benchmarks' peer (`make bench PEER=litellm`, `make bench-pool PEER=litellm`):
installed once into a virtualenv of its own (.bench/litellm), configured as close to InferGate's
work as it allows without a database, started in front of the benchmark's model server(s).

What every configuration shares (litellm_auth, LITELLM_SETTINGS): a key check on every request
(its `custom_auth` hook looking the key's SHA-256 up in an in-memory table), a requests-per-minute
limit per key counted in Redis (its parallel request limiter, sharing counters through
`coordination_redis`), no spend or error logs, and the model's price given so that it looks
nothing up in its cost map per request. What differs is the provider (`litellm_config`):
`ollama_chat/` speaks Ollama's native POST /api/chat, `openai/` the OpenAI-compatible POST
/v1/chat/completions that Ollama, vLLM, llama-server and the development model server serve too.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from devkit import backends  # noqa: E402

LITELLM = "litellm[proxy]==1.108.7"
LITELLM_VENV = ROOT / ".bench" / "litellm"
# The providers LiteLLM can reach an Ollama-compatible model server through: its native API, and
# its OpenAI-compatible /v1.
PROVIDERS = ("ollama_chat", "openai")


def litellm_auth(workdir: Path, keys: list[str]) -> None:
    """LiteLLM's custom_auth hook: a key check per request against an in-memory table of SHA-256
    hashes, each key with a requests/min limit its parallel request limiter counts in Redis."""
    hashes = {hashlib.sha256(key.encode()).hexdigest(): {"rpm_limit": 10**7} for key in keys}
    (workdir / "bench_auth.py").write_text(f'''import hashlib

from litellm.proxy._types import ProxyException, UserAPIKeyAuth

KEYS = {hashes!r}


async def user_api_key_auth(request, api_key):
    digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else None
    if digest not in KEYS:
        raise ProxyException(message="invalid api key", type="auth_error", param="api_key", code=401)
    return UserAPIKeyAuth(api_key=digest, token=digest, rpm_limit=KEYS[digest]["rpm_limit"])
''')


# What every LiteLLM configuration here shares: the key check, Redis for its counters, no spend
# or error logs (it has no database).
LITELLM_SETTINGS = """general_settings:
  custom_auth: bench_auth.user_api_key_auth
  coordination_redis:
    host: 127.0.0.1
    port: {redis_port}
  disable_spend_logs: true
  disable_error_logs: true
litellm_settings:
  telemetry: false
  set_verbose: false
"""


def litellm_config(provider: str, model: str, model_url: str, keys: list[str]) -> Callable[[Path, int], None]:
    """A config writer for LiteLLM's proxy doing as much of InferGate's work as it can without a
    database: a key check per request and per-key requests/min counted in Redis (litellm_auth), in
    front of the model server at `model_url` through `provider`: `ollama_chat` over Ollama's
    /api/chat, `openai` over its OpenAI-compatible /v1 (with a placeholder key: the server asks
    for none, LiteLLM's OpenAI client insists on one). The model's price is given, so it does no
    cost-map lookups."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    api_base = f"{model_url}/v1" if provider == "openai" else model_url
    api_key = "      api_key: none\n" if provider == "openai" else ""

    def configure(workdir: Path, redis_port: int) -> None:
        litellm_auth(workdir, keys)
        (workdir / "config.yaml").write_text(f"""model_list:
  - model_name: {model}
    litellm_params:
      model: {provider}/{model}
      api_base: {api_base}
{api_key}      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000001
""" + LITELLM_SETTINGS.format(redis_port=redis_port))
    return configure


def install(logs: Path) -> None:
    """LiteLLM's proxy in its own virtualenv, once (pip's output in logs/litellm-install.log)."""
    if (LITELLM_VENV / "bin" / "litellm").exists():
        return
    print(f"Installing {LITELLM} into {LITELLM_VENV.relative_to(ROOT)} (once; about two minutes) ...", flush=True)
    with open(logs / "litellm-install.log", "w") as log:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, stdout=log, stderr=log)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", LITELLM], check=True, stdout=log, stderr=log)


def start(stack: ExitStack, logs: Path, configure: Callable[[Path, int], None]) -> str:
    """LiteLLM's proxy (installed once), one worker, with a Redis of its own;
    `configure(workdir, redis_port)` writes its config. Its URL, once it answers."""
    install(logs)
    peer_redis = backends.start_redis()
    stack.callback(peer_redis.stop)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="litellm-")))
    configure(workdir, int(peer_redis.url.rsplit(":", 1)[1].split("/")[0]))
    port = backends.free_port()
    environment = {
        **os.environ, "PYTHONPATH": str(workdir), "LITELLM_MASTER_KEY": f"sk-{secrets.token_hex(16)}",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    }
    log = stack.enter_context(open(logs / f"litellm-{port}.log", "w"))
    process = subprocess.Popen(
        [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(workdir / "config.yaml"), "--host", "127.0.0.1",
         "--port", str(port), "--num_workers", "1"], cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT,
    )
    stack.callback(lambda: (process.terminate(), process.wait(60)))
    alive(port, process, 180)
    return f"http://127.0.0.1:{port}"


def alive(port: int, process: subprocess.Popen, timeout: float) -> None:
    """Once LiteLLM's proxy on `port` answers GET /health/liveliness 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health/liveliness")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"litellm was not ready after {timeout:.0f} s")
