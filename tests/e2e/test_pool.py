"""A pool of three model servers behind `make run`, over HTTP: requests spread and no server gets
more than its slots, a server that fails before answering is replaced unseen, requests wait in
line while every server is full (and are refused busy when they have waited too long), an
alias falls back at once, one server's breaker opens alone, and a server that leaves comes back.

Servers: `a` (Ollama's API) serves smollm2:135m and big:70b; `b` (Ollama's API) and `c`
(OpenAI's API, as vLLM speaks it) serve smollm2:135m. Each serves one request at a time and
takes 0.1 s a token, so that a long answer holds its server for a while.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from devkit import backends

from tests.support.paths import ROOT
from tests.support.stack import Stack
from tests.support.waiting import wait_for

MODEL = "smollm2:135m"
SHORT = {"prompt": "hello there", "max_tokens": 2}  # 0.2 s of answer
LONG_PROMPT = " ".join(["word"] * 60)


class Servers:
    """The three model servers, each on a port of its own that it keeps across a restart."""

    def __init__(self) -> None:
        self.ports = {name: backends.free_port() for name in "abc"}
        self.running: dict[str, backends.Service] = {}

    def start(self, name: str) -> None:
        models = [MODEL, "big:70b"] if name == "a" else [MODEL]
        self.running[name] = backends.start_model_server(
            engine="deterministic", models=models, port=self.ports[name],
            extra=["--slots", "1", "--token-delay", "0.1"])

    def stop(self, name: str) -> None:
        self.running.pop(name).stop()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stats(self, name: str) -> dict:
        return httpx.get(f"{self.url(name)}/_devkit/stats").json()

    def reset(self) -> None:
        for name in self.running:
            httpx.post(f"{self.url(name)}/_devkit/stats").raise_for_status()

    def fail(self, name: str, count: int, status: int = 500) -> None:
        httpx.post(f"{self.url(name)}/_devkit/faults",
                   json={"mode": "status", "status": status, "count": count}).raise_for_status()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    pool = Servers()
    for name in "abc":
        pool.start(name)
    yield pool
    for name in list(pool.running):
        pool.stop(name)


@pytest.fixture(scope="module")
def gateway(gateway_of, servers) -> Stack:
    listed = [{"name": "a", "url": servers.url("a"), "slots": 1},
              {"name": "b", "url": servers.url("b"), "slots": 1},
              {"name": "c", "url": servers.url("c"), "kind": "openai", "slots": 1}]
    return gateway_of("pool", MODEL_SERVERS=json.dumps(listed), MODEL_ALIASES=json.dumps({"chat": ["big:70b", MODEL]}),
                      QUEUE_TIMEOUT_SECONDS="3", CIRCUIT_BREAKER_FAILURES="2", CIRCUIT_BREAKER_OPEN_SECONDS="10",
                      OLLAMA_TIMEOUT="20", OLLAMA_STALL_TIMEOUT="5", MAX_CONCURRENT_REQUESTS="50",
                      RATE_LIMIT_RPM="10000", CONVERSATION_AFFINITY="true")


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.register()["api_key"]


def chat(gateway: Stack, key: str, body: dict | None = None) -> httpx.Response:
    with gateway.client() as http:
        return http.post("/v1/chat", json=body or SHORT, headers={"x-api-key": key})


@contextmanager
def holding(gateway: Stack, key: str, servers: Servers, count: int, *, model: str = MODEL,
            tokens: int = 40) -> Iterator[list[dict]]:
    """`count` long answers (`tokens` × 0.1 s) streamed at once, each holding a slot; yields once
    every one of them is being answered, and their ends (status, and the server that answered)
    once they are read through."""
    ended: list[dict] = []
    started = threading.Semaphore(0)

    def hold() -> None:
        with gateway.client(timeout=120) as http, http.stream(
                "POST", "/v1/chat", headers={"x-api-key": key},
                json={"prompt": LONG_PROMPT, "max_tokens": tokens, "stream": True, "model": model}) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    started.release()
                    break
            else:
                started.release()
            for _ in lines:
                pass
            ended.append({"status": response.status_code})

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=60), "a long answer did not start"
    try:
        yield ended
    finally:
        for thread in threads:
            thread.join(120)


def access_lines(gateway: Stack) -> list[dict]:
    return [line for line in gateway.json_log() if line.get("message") == "request" and line.get("route") == "/v1/chat"]


def test_requests_spread_over_the_servers_and_none_gets_more_than_its_slots(gateway, key, servers):
    servers.reset()
    answers, lock = [], threading.Lock()

    def many() -> None:
        for _ in range(4):
            status = chat(gateway, key).status_code
            with lock:
                answers.append(status)

    threads = [threading.Thread(target=many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 24, "six at once on three slots: those that found them full waited their turn"
    stats = {name: servers.stats(name) for name in "abc"}
    assert all(stat["max_in_flight"] == 1 for stat in stats.values()), stats
    assert all(sum(stat["requests"].values()) >= 4 for stat in stats.values()), stats


def test_a_request_that_waits_too_long_is_refused_busy_and_costs_nothing(gateway, key, servers):
    with holding(gateway, key, servers, 3, tokens=80):  # 8 s each, on all three servers
        refused = chat(gateway, key)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_busy"
    assert refused.headers["Retry-After"] == "1"
    line = access_lines(gateway)[-4:]
    assert any(entry["outcome"] == "model_busy" and entry["prompt_tokens"] == 0 for entry in line)


def test_a_server_failing_before_answering_is_replaced_unseen(gateway, key, servers):
    conversation = [{"role": "user", "content": "hello there"}]
    first = chat(gateway, key, {"messages": conversation, "max_tokens": 2})
    assert first.status_code == 200
    served = access_lines(gateway)[-1]["server"]
    servers.fail(served, 1)  # the next chat there fails: the conversation's next turn goes there first
    follow = [*conversation, {"role": "assistant", "content": first.json()["response"]},
              {"role": "user", "content": "and then?"}]
    second = chat(gateway, key, {"messages": follow, "max_tokens": 2})
    assert second.status_code == 200
    line = access_lines(gateway)[-1]
    assert line["servers_failed"] == [served] and line["servers_tried"] == 2 and line["server"] != served
    assert line["completion_tokens"] == 2, "charged once, for the answer given"


def test_an_alias_falls_back_at_once_while_its_first_models_server_is_full(gateway, key, servers):
    with holding(gateway, key, servers, 1, model="big:70b", tokens=30):
        fallback = chat(gateway, key, {**SHORT, "model": "chat"})
        assert fallback.status_code == 200 and fallback.json()["model"] == MODEL
    assert fallback.elapsed.total_seconds() < 2.5, "it did not wait out the 3 s queue for big:70b"
    first_choice = chat(gateway, key, {**SHORT, "model": "chat"})
    assert first_choice.status_code == 200 and first_choice.json()["model"] == "big:70b"
    listed = {model["id"] for model in httpx.get(f"{gateway.url}/v1/models", headers={"x-api-key": key}).json()["data"]}
    assert {"chat", "big:70b", MODEL} <= listed


def test_an_unknown_model_is_400_naming_it(gateway, key):
    unknown = chat(gateway, key, {**SHORT, "model": "ghost:1b"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "model_not_found"
    assert "ghost:1b" in unknown.json()["error"]["message"]


def test_operators_see_every_server_and_never_its_url(gateway, key, servers):
    with gateway.client() as http:
        listed = http.get("/admin/v1/servers", headers=gateway.admin())
        ready = http.get("/health/ready")
    assert listed.status_code == 200, listed.text
    data = {server["name"]: server for server in listed.json()["data"]}
    assert set(data) == {"a", "b", "c"} and data["c"]["kind"] == "openai" and data["a"]["slots"] == 1
    assert set(data["a"]["models"]) == {MODEL, "big:70b"} and data["c"]["models"] == [MODEL]
    assert sum(server["requests_last_minute"] for server in data.values()) > 0
    assert all(str(port) not in listed.text for port in servers.ports.values())
    assert set(ready.json()["servers"]) == {"a", "b", "c"} and ready.json()["checks"]["model_server"]["status"] == "ok"

    shown = subprocess.run([str(ROOT / ".venv" / "bin" / "infergate"), "servers"], text=True, capture_output=True,
                           timeout=60, env={**os.environ, "INFERGATE_URL": gateway.url,
                                            "INFERGATE_ADMIN_KEY": gateway.admin()["x-api-key"]})
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:]}
    assert set(rows) == {"a", "b", "c"} and rows["c"][1] == "openai" and "big:70b" in shown.stdout


def test_one_servers_breaker_opens_alone_and_the_server_comes_back(gateway, key, servers):
    servers.stop("b")
    for _ in range(2):  # three at once on three slots: one of them is placed on b, fails, and waits for another
        with holding(gateway, key, servers, 3, tokens=10) as ended:
            pass
        assert [end["status"] for end in ended] == [200] * 3
    with gateway.client() as http:
        listed = {s["name"]: s for s in http.get("/admin/v1/servers", headers=gateway.admin()).json()["data"]}
    assert listed["b"]["breaker"] == "open" and not listed["b"]["healthy"]
    assert listed["a"]["breaker"] == listed["c"]["breaker"] == "closed"
    assert chat(gateway, key).status_code == 200, "b's breaker refuses nothing a or c can serve"

    servers.start("b")
    servers.reset()

    def b_serves_again() -> bool:
        assert chat(gateway, key).status_code == 200
        return servers.stats("b")["requests"].get(MODEL, 0) > 0

    wait_for(b_serves_again, timeout=60, interval=0.2, what="b taking requests again once its breaker let a probe through")
    with gateway.client() as http:
        listed = {s["name"]: s for s in http.get("/admin/v1/servers", headers=gateway.admin()).json()["data"]}
    assert listed["b"]["breaker"] == "closed"
