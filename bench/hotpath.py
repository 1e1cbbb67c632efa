# Longer than 300 lines: one run, end to end, on one set of backends and targets: the scenarios,
# their report and verdicts, the API shapes and the store round trips share its targets and
# figures; what stands on its own is elsewhere (LiteLLM: litellm_peer.py, streamed chats:
# streaming.py, the wire counters: wiretap.py, prompt bounds: bounds.py).
"""Benchmark: what the gateway adds to a model call, and how it holds up when one key (or many)
sends many requests at once.

Starts its own backends (secantusdb, a redis-server, and the Ollama-compatible
model server answering 16 tokens at once), then InferGate twice on the same
backends: as `make run` serves it (functions in worker processes) and as
`make run-lambda` does (sam build's output under the Lambda runtime emulator).
With `--peer litellm` (`make bench PEER=litellm`) it also installs and starts
LiteLLM's proxy twice, each configured as close to InferGate's work as it
allows (bench/litellm_peer.py): through its `ollama_chat/` provider against
the model server's native /api/chat, and through its `openai/` provider
against the server's OpenAI-compatible /v1. Both are measured in the same
rounds and both are printed; the faster of the two (requests/s, geometric
mean over the scenarios) is the peer the verdicts compare InferGate with,
by name. With `--against DIR` (`make bench AGAINST=DIR`) it also
starts InferGate from another checkout (a git worktree of the commit before a
change, say; `make -C DIR build` first for make run-lambda), on the same
backends, and prints this one's figures as ratios to that one's.

Every target gets the same request from the same client: a 14-word prompt
whose answer is 16 tokens. "direct" is the model server itself (POST /api/chat,
not streamed), the baseline every overhead is measured against. Batches run
in rounds, the targets' order rotating each round, so the machine's noise
falls on all of them alike; figures pool the rounds. Overhead pXX is the
target's pXX latency minus the model server's, in the same scenario (and the
same rounds). Each scenario's first round is also shown apart from its warm
rounds (the rounds after it): what a change of concurrency calls on (function
instances left idle by the scenario before, or new ones, cold) lands in the
first round, and the warm rounds' overhead p99 is judged against 3x their
overhead p50.

Then the other API shapes on the same metered path, at c=1 on kept-alive
connections, one key: POST /v1/chat/completions, /v1/messages (Anthropic) and
/v1/responses (OpenAI Responses, `store: false`) through each InferGate
above, the same chat in each one's words (the same prompt, model and max
tokens, not streamed), beside the model server; one request to each target
in turn, the order rotating every turn, so that the machine's noise falls on
all of them alike (--api-seconds for each); overhead p50 and p90 of each, and
/v1/messages' and /v1/responses' overhead p50 as ratios to
/v1/chat/completions' in the same run, each judged against 1.1x.

Then it counts the store round trips of 200 chats through `make run`, on
the wire: InferGate in front of proxies that count each request a client
sends to Redis or MongoDB (bench/wiretap.py).

Last, streamed chats (bench/streaming.py): a second model server answering
a token every 50 ms, InferGate twice more in front of it (`make run` and
`make run-lambda`, on the same stores), and POST /v1/chat/completions with
`stream: true` timed at the client to its first and last token (TTFT,
TTLT), beside the model server's own streamed /api/chat, and beside the same
chat not streamed (`stream: false`, the whole answer), c=1, rounds rotating;
in the same rounds, /v1/messages and /v1/responses streamed through `make
run`, to their first and last text delta, as ratios to /v1/chat/completions'.

And what a prompt is charged where the model server does not count it, against
the truth, in bytes and by the model's tokenizer (bench/bounds.py).

    .venv/bin/python bench/hotpath.py [--seconds 3] [--rounds 3] [--peer litellm] [--against DIR]
                                      [--api-seconds 4.5]
                                      [--stream-samples 20] [--stream-only]     (or: make bench)
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "layers" / "common")]

import bounds  # noqa: E402
import litellm_peer  # noqa: E402
import streaming  # noqa: E402
from devkit import backends  # noqa: E402

# bench/pool.py takes LiteLLM's settings and key check from here, with start_litellm below.
from litellm_peer import LITELLM_SETTINGS, litellm_auth, litellm_config  # noqa: E402,F401
from wiretap import Wiretap, mongo_commands, redis_commands  # noqa: E402

MODEL = "smollm2:135m"
PROMPT = "Please tell me a short story about a brave little robot who learns to paint"  # 14 words: 16 tokens back
MAX_TOKENS = 32
KEYS = 32
# Limits far above what the benchmark sends: every request is checked, none refused.
GATEWAY_SETTINGS = {
    "DEFAULT_MONTHLY_TOKEN_QUOTA": str(10**12), "RATE_LIMIT_RPM": str(10**7), "RATE_LIMIT_TPM": str(10**10),
    "MAX_CONCURRENT_REQUESTS": str(10**4),
    "REGISTER_RATE_LIMIT_PER_HOUR": str(10**4), "OLLAMA_MODEL": MODEL, "OLLAMA_AUTODETECT": "0", "LOG_LEVEL": "WARNING",
    # Eight instances of a function at most, as make run started before it scaled with the load:
    # on two cores more processes only contend, and the figures stay comparable with earlier runs.
    "DEVKIT_MAX_INSTANCES": "8",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    keys: int
    keep_alive: bool = True


SCENARIOS = [
    Scenario("c=1, 1 key, kept-alive", 1, 1),
    Scenario("c=1, 1 key, new connections", 1, 1, keep_alive=False),
    Scenario("c=8, 1 key", 8, 1),
    Scenario("c=32, 1 key", 32, 1),
    Scenario("c=32, 32 keys", 32, KEYS),
]


@dataclass
class Target:
    name: str
    host: str
    port: int
    path: str
    body: bytes
    keys: list[str] = field(default_factory=lambda: [""])
    header: str = "x-api-key"

    def headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers[self.header] = key if self.header == "x-api-key" else f"Bearer {key}"
        return headers


@dataclass
class Batch:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, latencies: list[float], errors: dict[str, int]) -> None:
        self.latencies.extend(latencies)
        for outcome, count in errors.items():
            self.errors[outcome] = self.errors.get(outcome, 0) + count


def run_batch(target: Target, scenario: Scenario, seconds: float) -> Batch:
    """A closed loop of `scenario.concurrency` clients for `seconds`; client i uses key i mod keys."""
    batch, lock = Batch(), threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        key = target.keys[index % min(scenario.keys, len(target.keys))]
        headers = target.headers(key)
        connection = None
        mine, errors = [], {}
        while time.monotonic() < stop:
            if connection is None or not scenario.keep_alive:
                connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
            started = time.perf_counter()
            try:
                connection.request("POST", target.path, body=target.body,
                                   headers=headers if scenario.keep_alive else {**headers, "Connection": "close"})
                response = connection.getresponse()
                response.read()
                outcome = "ok" if response.status == 200 else str(response.status)
            except OSError as error:
                outcome, connection = type(error).__name__, None
            if outcome == "ok":
                mine.append(time.perf_counter() - started)
            else:
                errors[outcome] = errors.get(outcome, 0) + 1
            if not scenario.keep_alive and connection is not None:
                connection.close()
        with lock:
            batch.add(mine, errors)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(scenario.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch.seconds = time.monotonic() - began
    return batch


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


@dataclass
class Figures:
    rps: float
    p50: float
    p99: float
    worst: float
    errors: dict[str, int]
    p90: float = float("nan")

    @classmethod
    def of(cls, batches: list[Batch]) -> Figures:
        latencies = [value * 1000 for batch in batches for value in batch.latencies]
        errors: dict[str, int] = {}
        for batch in batches:
            for outcome, count in batch.errors.items():
                errors[outcome] = errors.get(outcome, 0) + count
        return cls(
            rps=len(latencies) / sum(batch.seconds for batch in batches),
            p50=statistics.median(latencies) if latencies else float("nan"),
            p99=percentile(latencies, 0.99), worst=max(latencies, default=float("nan")), errors=errors,
            p90=percentile(latencies, 0.90),
        )


# -- what runs ------------------------------------------------------------------

def wait_for(url: str, process: subprocess.Popen, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            host, port = url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s")


def start_gateway(stack: ExitStack, runtime: str, environment: dict[str, str], logs: Path, *, name: str = "",
                  root: Path = ROOT) -> str:
    """InferGate as `runtime` serves it, from the checkout at `root`."""
    port = backends.free_port()
    name = name or runtime
    log = stack.enter_context(open(logs / f"infergate-{name}.log", "w"))
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.run", "--runtime", runtime], cwd=root, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **environment, "PORT": str(port), "INFERGATE_DATA_DIR": str(logs / name)},
    )
    stack.callback(lambda: (process.send_signal(2), process.wait(60)))
    url = f"http://127.0.0.1:{port}"
    wait_for(url, process, f"InferGate ({runtime})", 300)
    return url


def register(url: str, count: int) -> list[str]:
    host, port = url.removeprefix("http://").split(":")
    keys = []
    for index in range(count):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("POST", "/v1/register", body=json.dumps({"email": f"bench{index}-{secrets.token_hex(4)}@example.com"}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        reply = json.loads(response.read())
        if response.status != 201:
            raise RuntimeError(f"registration failed: {reply}")
        keys.append(reply["api_key"])
    return keys


def start_litellm(stack: ExitStack, model_url: str, keys: list[str], logs: Path,
                  configure: Callable[[Path, int], None] | None = None) -> str:
    """LiteLLM's proxy (bench/litellm_peer.py) in front of the model server at `model_url`, by
    default through its `ollama_chat/` provider; `configure(workdir, redis_port)` writes another
    config (bench/pool.py's router)."""
    return litellm_peer.start(stack, logs, configure or litellm_config("ollama_chat", MODEL, model_url, keys))


def litellm_name(provider: str) -> str:
    return f"litellm {provider}/"


def targets(model_url: str, gateways: dict[str, str], keys: list[str]) -> list[Target]:
    def at(url: str) -> tuple[str, int]:
        host, port = url.removeprefix("http://").split(":")
        return host, int(port)

    messages = [{"role": "user", "content": PROMPT}]
    found = [Target("direct", *at(model_url), "/api/chat", json.dumps(
        {"model": MODEL, "messages": messages, "stream": False, "options": {"num_predict": MAX_TOKENS}}).encode())]
    for name, url in gateways.items():
        if name.startswith("litellm "):
            found.append(Target(name, *at(url), "/v1/chat/completions",
                                json.dumps({"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS}).encode(),
                                keys, header="authorization"))
        else:
            found.append(Target(name, *at(url), "/v1/chat", json.dumps({"prompt": PROMPT, "max_tokens": MAX_TOKENS}).encode(),
                                keys))
    return found


# -- the other API shapes ------------------------------------------------------------

API_GATEWAYS = ("make run", "make run-lambda")
API_SCENARIO = Scenario("c=1, 1 key, kept-alive", 1, 1)
CHAT_COMPLETIONS = "/v1/chat/completions"


def api_targets(model_url: str, gateways: dict[str, str], keys: list[str]) -> list[Target]:
    """The model server (the baseline), then for each of this checkout's InferGates its
    /v1/chat/completions, /v1/messages and /v1/responses with the same chat (not streamed), one key."""
    messages = [{"role": "user", "content": PROMPT}]
    found = [Target("direct", *_host_port(model_url), "/api/chat", json.dumps(
        {"model": MODEL, "messages": messages, "stream": False, "options": {"num_predict": MAX_TOKENS}}).encode())]
    bodies = {CHAT_COMPLETIONS: json.dumps({"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS,
                                            "stream": False}).encode(),
              **streaming.api_bodies(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, stream=False)}
    for gateway in API_GATEWAYS:
        if gateway in gateways:
            found.extend(Target(f"{gateway} {path}", *_host_port(gateways[gateway]), path, body, keys[:1])
                         for path, body in bodies.items())
    return found


def _answers_text(target: Target) -> str:
    """"" when `target` answers its chat with text in its API's shape, else what it answered."""
    connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
    try:
        connection.request("POST", target.path, body=target.body, headers=target.headers(target.keys[0]))
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        reply = json.loads(body)
        text = {"/api/chat": lambda: reply["message"]["content"],
                CHAT_COMPLETIONS: lambda: reply["choices"][0]["message"]["content"],
                "/v1/messages": lambda: reply["content"][0]["text"],
                "/v1/responses": lambda: reply["output"][-1]["content"][0]["text"]}[target.path]()
    except (ValueError, KeyError, IndexError, TypeError):
        text = ""
    return "" if response.status == 200 and text else f"{response.status} {body[:200]!r}"


def api_section(everything: list[Target], seconds: float) -> dict[str, Figures]:
    """About `seconds` of requests to each target, c=1, each on a kept-alive connection of its own
    (opened before it is timed): one request to every target in turn, the order rotating every
    turn; then each target's figures."""
    for target in everything:
        if wrong := _answers_text(target):
            print(f"  warning: {target.name} did not answer its chat with text: {wrong}", flush=True)
        if target.name != "direct":  # every instance that served the warm-up burst, through this route
            run_batch(target, Scenario("warm", 8, 1), 0.5)
    batches = {target.name: Batch() for target in everything}
    connections: dict[str, http.client.HTTPConnection] = {}
    stop = time.monotonic() + seconds * len(everything)
    turn = 0
    while time.monotonic() < stop:
        shift = turn % len(everything)
        for target in everything[shift:] + everything[:shift]:
            batch = batches[target.name]
            outcome, took = _timed_request(target, connections)
            batch.seconds += took
            if outcome == "ok":
                batch.latencies.append(took)
            else:
                batch.errors[outcome] = batch.errors.get(outcome, 0) + 1
        turn += 1
    for connection in connections.values():
        connection.close()
    return {target.name: Figures.of([batches[target.name]]) for target in everything}


def _timed_request(target: Target, connections: dict[str, http.client.HTTPConnection]) -> tuple[str, float]:
    """One request to `target` on its kept-alive connection in `connections` (opened first, untimed,
    where there is none): its outcome ("ok" or what went wrong) and its seconds."""
    started = time.perf_counter()
    try:
        if target.name not in connections:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
            connection.connect()
            connections[target.name], started = connection, time.perf_counter()
        connections[target.name].request("POST", target.path, body=target.body, headers=target.headers(target.keys[0]))
        response = connections[target.name].getresponse()
        response.read()
        outcome = "ok" if response.status == 200 else str(response.status)
    except (OSError, http.client.HTTPException) as error:
        outcome = type(error).__name__
        if target.name in connections:
            connections.pop(target.name).close()
    return outcome, time.perf_counter() - started


def api_report(figures: dict[str, Figures], seconds: float) -> None:
    """Each target's overhead p50 and p90, and each API shape's overhead p50 over its gateway's
    /v1/chat/completions' in the same run, judged against streaming.RATIO_GOAL."""
    goal = streaming.RATIO_GOAL
    direct = figures["direct"]
    width = max(16, *(len(name) for name in figures))
    print(f"\nAPI shapes, {API_SCENARIO.name} (not streamed; the same prompt, model and max tokens in each; "
          f"/v1/responses with store false), one request to each target in turn, {seconds:g} s each; "
          f"req/s: one over the mean latency; x chat: overhead p50 over the same gateway's {CHAT_COMPLETIONS}':")
    print(f"{'target':<{width}} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'+p50 ms':>8} {'+p90 ms':>8} "
          f"{'x chat':>7}  errors")
    for name, found in figures.items():
        extra = ""
        if name != "direct":
            chat = figures[f"{name.rsplit(' ', 1)[0]} {CHAT_COMPLETIONS}"]
            extra = (f"{found.p50 - direct.p50:>8.1f} {found.p90 - direct.p90:>8.1f} "
                     f"{(found.p50 - direct.p50) / (chat.p50 - direct.p50):>6.2f}x")
        print(f"{name:<{width}} {found.rps:>7.1f} {found.p50:>7.1f} {found.p90:>7.1f} {extra:>25}  "
              f"{sum(found.errors.values()) or ''} {' '.join(f'{k}:{v}' for k, v in found.errors.items())}".rstrip())
    print()
    for gateway in API_GATEWAYS:
        chat = figures.get(f"{gateway} {CHAT_COMPLETIONS}")
        if chat is None:
            continue
        for path in streaming.API_PATHS:
            found = figures[f"{gateway} {path}"]
            if found.errors or chat.errors:
                print(f"{gateway} {path}: errors, no verdict")
                continue
            ratio = (found.p50 - direct.p50) / (chat.p50 - direct.p50)
            print(f"{gateway} {path}: overhead p50 {found.p50 - direct.p50:.1f} ms = {ratio:.2f}x "
                  f"{CHAT_COMPLETIONS}' {chat.p50 - direct.p50:.1f} ms (p90 {found.p90 - direct.p90:.1f} against "
                  f"{chat.p90 - direct.p90:.1f} ms): {'within' if ratio <= goal else 'NOT within'} {goal}x")


# -- round trips ------------------------------------------------------------------

# Connection set-up and server monitoring, not a chat's work.
_HOUSEKEEPING = {"hello", "ismaster", "isMaster", "ping", "endSessions", "buildinfo", "buildInfo",
                 "HELLO", "CLIENT", "PING", "SCRIPT"}


def round_trips(stack: ExitStack, environment: dict[str, str], logs: Path, chats: int) -> dict[str, dict[str, float]]:
    """The requests a chat sends to each store, counted on the wire around `chats` chats through
    `make run` (one key, in a row): InferGate in front of counting proxies. First for a user in
    no team, then for the same user once a member of a team with a quota and a budget."""
    mongo = Wiretap(_host_port(environment["MONGODB_URI"]), mongo_commands)
    cache = Wiretap(_host_port(environment["REDIS_URL"]), redis_commands)
    counted = {**environment, "MONGODB_URI": f"mongodb://127.0.0.1:{mongo.port}/?directConnection=true",
               "REDIS_URL": f"redis://127.0.0.1:{cache.port}/0"}
    url = start_gateway(stack, "workers", counted, logs, name="counted")
    target = Target("counted", *_host_port(url), "/v1/chat",
                    json.dumps({"prompt": PROMPT, "max_tokens": MAX_TOKENS}).encode(), register(url, 1))
    counts = {"no team": _per_chat(target, {"MongoDB": mongo, "Redis": cache}, chats)}
    _join_a_team(environment, url, target.keys[0])
    counts["team member"] = _per_chat(target, {"MongoDB": mongo, "Redis": cache}, chats)
    return counts


def _per_chat(target: Target, taps: dict[str, Wiretap], chats: int) -> dict[str, float]:
    run_batch(target, Scenario("warm", 1, 1), 1.0)
    before = {store: tap.snapshot() for store, tap in taps.items()}
    done = run_count(target, chats)
    per_chat = {}
    for store, tap in taps.items():
        for command, count in (tap.snapshot() - before[store]).items():
            if command not in _HOUSEKEEPING:
                per_chat[f"{store} {command}"] = count / done
    return per_chat


def _join_a_team(environment: dict[str, str], url: str, key: str) -> None:
    """Make a team with a quota and a budget through the admin API and put the key's user in it;
    back once the gateway holds the user's chats at the team."""
    import pymongo

    from infergate.domain.administration import create_admin_key
    from infergate.domain.keys import hash_key
    from infergate.stores.accounts import MongoAccountStore

    database = pymongo.MongoClient(environment["MONGODB_URI"])[GATEWAY_SETTINGS.get("MONGODB_DB", "infergate")]
    admin = {"x-api-key": create_admin_key("bench", "admin", store=MongoAccountStore(database),
                                           now=datetime.now(UTC))[1], "Content-Type": "application/json"}
    user_id = database.api_keys.find_one({"key_hash": hash_key(key)})["user_id"]
    connection = http.client.HTTPConnection(*_host_port(url), timeout=30)
    team = _call(connection, "POST", "/admin/v1/teams", admin, {"name": "bench", "monthly_token_quota": 10**12,
                                                                 "monthly_budget_micros": 10**12})
    _call(connection, "POST", f"/admin/v1/teams/{team['team_id']}/members", admin, {"user_id": user_id})
    deadline = time.monotonic() + 30
    while _call(connection, "GET", "/v1/usage", {"x-api-key": key}, None).get("team") is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not see the team within 30 s")
        time.sleep(0.2)


def _call(connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
          body: dict | None) -> dict:
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = connection.getresponse()
    reply = json.loads(response.read())
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} failed with {response.status}: {reply}")
    return reply


def run_count(target: Target, chats: int) -> int:
    connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
    for _ in range(chats):
        connection.request("POST", target.path, body=target.body, headers=target.headers(target.keys[0]))
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"a chat failed with {response.status}")
    return chats


def _host_port(url: str) -> tuple[str, int]:
    address = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    host, port = address.rsplit(":", 1)
    return host, int(port)


def exactness(mongo_url: str, database: str) -> str:
    """Every user's month as the ledger reads it: nothing charged past a quota, the counter
    equal to the sum of its request log."""
    from infergate.domain.periods import period_of
    from infergate.stores.mongo import connect
    from infergate.stores.usage import MongoUsageLedger

    db = connect(mongo_url)[database]
    ledger = MongoUsageLedger(db)
    quota = int(GATEWAY_SETTINGS["DEFAULT_MONTHLY_TOKEN_QUOTA"])
    months = list(db.usage.find({"period": period_of(datetime.now(UTC))}, {"user_id": 1, "period": 1}))
    overspent = drift = lines = 0
    for month in months:
        statement = ledger.statement(month["user_id"], month["period"])
        overspent += max(0, statement.tokens_used - quota)
        drift += abs(statement.tokens_used - sum(line.charged for line in statement.log))
        lines += len(statement.log)
    return (f"Exactness after the run: {len(months)} users, {lines} requests logged; tokens charged past a quota: "
            f"{overspent}; counter minus log: {drift}")


# -- streamed chats ----------------------------------------------------------------

def streaming_section(stack: ExitStack, environment: dict[str, str], logs: Path, runtimes: list[str],
                      samples: int) -> None:
    """TTFT and TTLT of a streamed chat through each gateway and from the model server itself, and
    the buffered chat's total time, against a model server of its own that answers a token every
    streaming.TOKEN_SECONDS (the gateways measured above keep theirs)."""
    print(f"\nStreamed chats: a model server answering a token every {streaming.TOKEN_SECONDS * 1000:.0f} ms, "
          "InferGate in front of it ...", flush=True)
    model = backends.start_model_server(engine="deterministic", models=[MODEL],
                                        log=stack.enter_context(open(logs / "model-server-slow.log", "w")),
                                        extra=["--token-delay", str(streaming.TOKEN_SECONDS)])
    stack.callback(model.stop)
    slow = {**environment, "OLLAMA_URL": model.url}
    gateways = {}
    for runtime in runtimes:
        name = "make run" if runtime == "workers" else "make run-lambda"
        gateways[name] = start_gateway(stack, runtime, slow, logs, name=f"streaming-{runtime}")
    key = register(next(iter(gateways.values())), 1)[0]
    found = streaming.targets(model.url, gateways, key, model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS)
    results = streaming.measure(found, samples)
    print(f"\nStreamed chat, POST /v1/chat/completions (direct: /api/chat), medians of {samples} rounds, c=1, "
          f"kept-alive, a token every {streaming.TOKEN_SECONDS * 1000:.0f} ms; TTFT/TTLT: first/last piece of "
          "content at the client; buffered: stream false, whole answer; +: minus direct:")
    for line in streaming.report(results, apis=found):
        print(line)


# -- the report -------------------------------------------------------------------

def report(results: dict[str, dict[str, Figures]]) -> None:
    width = max(16, *(len(name) for by_target in results.values() for name in by_target))
    print()
    print(f"{'scenario':<30} {'target':<{width}} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'+p50 ms':>8} {'+p99 ms':>8}  errors")
    for scenario, by_target in results.items():
        direct = by_target["direct"]
        for name, figures in by_target.items():
            extra = "" if name == "direct" else f"{figures.p50 - direct.p50:>8.1f} {figures.p99 - direct.p99:>8.1f}"
            print(f"{scenario:<30} {name:<{width}} {figures.rps:>7.1f} {figures.p50:>7.1f} {figures.p99:>7.1f} "
                  f"{figures.worst:>7.1f} {extra:>17}  {sum(figures.errors.values()) or ''} "
                  f"{' '.join(f'{k}:{v}' for k, v in figures.errors.items())}")
    peer, others = faster_litellm(results)
    if peer is not None:
        print(f"\nThe faster LiteLLM configuration, the peer the verdicts compare InferGate with: {peer} "
              f"({litellm_speed(results, peer):.1f} requests/s, geometric mean over the scenarios; "
              + ", ".join(f"{other} {litellm_speed(results, other):.1f}" for other in others) + ")")


# The warm rounds' overhead p99 is to stay within this many times their overhead p50.
WARM_GOAL = 3.0


def phases(batches: list[Batch]) -> tuple[Figures, Figures | None]:
    """A target's figures in a scenario's first round, and in the rounds after it (None with one round)."""
    return Figures.of(batches[:1]), (Figures.of(batches[1:]) if len(batches) > 1 else None)


def spread(figures: Figures, direct: Figures) -> tuple[float, float, float]:
    """Overhead p50 and p99 (over `direct`'s), and p99 over p50: nan where that means nothing, an
    overhead p50 not above 0 or a p99 below 0 (the model server's own p99 above the target's)."""
    p50, p99 = figures.p50 - direct.p50, figures.p99 - direct.p99
    return p50, p99, (p99 / p50 if p50 > 0 and p99 >= 0 else float("nan"))


def phase_cells(figures: Figures | None, direct: Figures | None, overhead: bool) -> str:
    """p50, p99, and with `overhead` +p50, +p99 and their ratio, of one phase; blanks where there are none."""
    if figures is None or direct is None or math.isnan(figures.p50):  # no such round, or nothing answered 200
        return f"{'-':>7} {'-':>7} " + (f"{'-':>8} {'-':>8} {'-':>6}" if overhead else " " * 24)
    cells = f"{figures.p50:>7.1f} {figures.p99:>7.1f} "
    if not overhead:
        return cells + " " * 24
    p50, p99, ratio = spread(figures, direct)
    return cells + f"{p50:>8.1f} {p99:>8.1f} {_ratio(ratio):>6}"


def rounds_report(measured: dict[str, dict[str, list[Batch]]]) -> None:
    """Per scenario and target, the first round's figures beside the warm rounds' (pooled): the
    first round at a scenario is where a change of concurrency shows."""
    rounds = len(next(iter(next(iter(measured.values())).values())))
    width = max(16, *(len(name) for by_target in measured.values() for name in by_target))
    warm = f"rounds 2 to {rounds}, pooled" if rounds > 2 else "round 2" if rounds == 2 else "none: --rounds 1"
    print(f"\nEach scenario's first round apart from its warm rounds ({warm}); "
          "+: overhead, minus direct's in the same rounds; x: +p99 over +p50:")
    phase = f"{'p50 ms':>7} {'p99 ms':>7} {'+p50 ms':>8} {'+p99 ms':>8} {'x':>6}"
    print(f"{'':<30} {'':<{width}} {'first round':^40} | {'warm rounds':^40}")
    print(f"{'scenario':<30} {'target':<{width}} {phase} | {phase}  errors first/warm")
    for scenario, by_target in measured.items():
        first_direct, warm_direct = phases(by_target["direct"])
        for name, batches in by_target.items():
            first, warm = phases(batches)
            errors = [sum(figures.errors.values()) for figures in (first, warm) if figures is not None]
            cells = [phase_cells(figures, direct, name != "direct")
                     for figures, direct in ((first, first_direct), (warm, warm_direct))]
            print(f"{scenario:<30} {name:<{width}} {cells[0]} | {cells[1]}  "
                  f"{'/'.join(map(str, errors)) if any(errors) else ''}".rstrip())


def warm_verdicts(measured: dict[str, dict[str, list[Batch]]]) -> None:
    """Per target, the warm rounds' overhead p99 over their overhead p50 in each scenario, judged
    against WARM_GOAL; and the first round's overhead p99 over the warm rounds', as it is."""
    print()
    for name in (name for name in next(iter(measured.values())) if name != "direct"):
        ratios, firsts = {}, []
        for scenario, by_target in measured.items():
            (first, warm), (first_direct, warm_direct) = phases(by_target[name]), phases(by_target["direct"])
            if warm is None or warm_direct is None:
                print(f"{name}: no warm rounds (--rounds 1), no verdict")
                break
            ratios[scenario] = spread(warm, warm_direct)[2]
            warm_p99 = spread(warm, warm_direct)[1]
            firsts.append(spread(first, first_direct)[1] / warm_p99 if warm_p99 > 0 else float("nan"))
        else:
            print(f"{name}: warm rounds' overhead p99/p50 per scenario " + ", ".join(map(_ratio, ratios.values()))
                  + f": {_warm_verdict(ratios)}; first round's overhead p99 over the warm rounds' "
                  + ", ".join(map(_ratio, firsts)))


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _warm_verdict(ratios: dict[str, float]) -> str:
    """Within WARM_GOAL or not, naming the scenarios over it, and those without a verdict (nan)."""
    over = [f"{scenario} {ratio:.2f}" for scenario, ratio in ratios.items() if ratio > WARM_GOAL]
    unjudged = [scenario for scenario, ratio in ratios.items() if math.isnan(ratio)]
    verdict = f"NOT within {WARM_GOAL:g}x ({'; '.join(over)})" if over else f"within {WARM_GOAL:g}x"
    if unjudged:
        verdict += f", no verdict in {'; '.join(unjudged)} (nothing answered, or an overhead p50 or p99 below 0)"
    return verdict


def verdicts(results: dict[str, dict[str, Figures]]) -> None:
    """The figures the hot path is judged by, as ratios within this one run."""
    def overhead(scenario: str, target: str, which: str = "p50") -> float:
        return getattr(results[scenario][target], which) - getattr(results[scenario]["direct"], which)

    print()
    for gateway in ("make run", "make run-lambda"):
        if gateway not in results[SCENARIOS[0].name]:
            continue
        eight = results["c=8, 1 key"][gateway]
        burst = results["c=32, 1 key"][gateway]
        print(f"{gateway}: overhead p50 at c=1 {overhead('c=1, 1 key, kept-alive', gateway):.1f} ms; "
              f"c=8 one key {eight.rps:.0f} req/s, overhead p99/p50 "
              f"{overhead('c=8, 1 key', gateway, 'p99') / overhead('c=8, 1 key', gateway):.2f}; "
              f"c=32 one key: {sum(burst.errors.values())} failed, slowest {burst.worst:.0f} ms; "
              f"c=32 32 keys {results['c=32, 32 keys'][gateway].rps:.0f} req/s")
    if "make run-lambda" in results[SCENARIOS[0].name] and "make run" in results[SCENARIOS[0].name]:
        slower = [overhead(s.name, "make run-lambda") / overhead(s.name, "make run") for s in SCENARIOS]
        fewer = [results[s.name]["make run"].rps / results[s.name]["make run-lambda"].rps for s in SCENARIOS]
        print("make run-lambda against make run, per scenario: overhead p50 " + ", ".join(f"{r:.2f}x" for r in slower)
              + "; requests/s " + ", ".join(f"1/{r:.2f}" for r in fewer))
    against(results)
    peer_verdicts(results)


def litellm_speed(results: dict[str, dict[str, Figures]], name: str) -> float:
    """`name`'s requests/s over the scenarios: their geometric mean."""
    return statistics.geometric_mean([max(results[s.name][name].rps, 1e-9) for s in SCENARIOS])


def faster_litellm(results: dict[str, dict[str, Figures]]) -> tuple[str | None, list[str]]:
    """The faster of the LiteLLM configurations measured (litellm_speed), the peer InferGate is
    compared with, and the others; (None, []) without any."""
    names = sorted((name for name in results[SCENARIOS[0].name] if name.startswith("litellm ")),
                   key=lambda name: litellm_speed(results, name), reverse=True)
    return (names[0], names[1:]) if names else (None, [])


def peer_verdicts(results: dict[str, dict[str, Figures]]) -> None:
    """The faster LiteLLM configuration against the other, per scenario; then each InferGate against
    the faster: below 1 for overhead and above 1 for requests/s are InferGate's way."""
    peer, others = faster_litellm(results)
    if peer is None:
        return

    def overhead(scenario: str, target: str) -> float:
        return results[scenario][target].p50 - results[scenario]["direct"].p50

    for other in others:
        rps = [results[s.name][peer].rps / max(results[s.name][other].rps, 1e-9) for s in SCENARIOS]
        slower = [overhead(s.name, peer) / overhead(s.name, other) for s in SCENARIOS]
        print(f"{peer} against {other}, per scenario: requests/s " + ", ".join(f"{r:.2f}x" for r in rps)
              + "; overhead p50 " + ", ".join(f"{r:.2f}x" for r in slower))
    for gateway in ("make run", "make run-lambda"):
        if gateway not in results[SCENARIOS[0].name]:
            continue
        print(f"{gateway} vs {peer}: overhead p50 at c=1 "
              f"{overhead('c=1, 1 key, kept-alive', gateway) / overhead('c=1, 1 key, kept-alive', peer):.2f}x; "
              f"throughput c=8 one key {results['c=8, 1 key'][gateway].rps / results['c=8, 1 key'][peer].rps:.2f}x; "
              f"c=32 32 keys {results['c=32, 32 keys'][gateway].rps / results['c=32, 32 keys'][peer].rps:.2f}x")


def against(results: dict[str, dict[str, Figures]]) -> None:
    """This checkout's figures as ratios to the other checkout's (--against), per scenario: below 1
    for overhead and above 1 for requests/s are this one's way."""
    for gateway in ("make run", "make run-lambda"):
        other = next((name for name in results[SCENARIOS[0].name] if name.startswith(f"{gateway} @")), None)
        if other is None or gateway not in results[SCENARIOS[0].name]:
            continue
        overhead = [(results[s.name][gateway].p50 - results[s.name]["direct"].p50)
                    / (results[s.name][other].p50 - results[s.name]["direct"].p50) for s in SCENARIOS]
        rps = [results[s.name][gateway].rps / results[s.name][other].rps for s in SCENARIOS]
        print(f"{gateway} against {other}, per scenario: overhead p50 " + ", ".join(f"{r:.2f}x" for r in overhead)
              + "; requests/s " + ", ".join(f"{r:.2f}x" for r in rps))


def revision(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch")
    parser.add_argument("--rounds", type=int, default=3, help="per scenario: the first, then the warm ones")
    parser.add_argument("--peer", choices=["litellm"], help="also measure this peer gateway (LiteLLM: both providers)")
    parser.add_argument("--runtimes", nargs="+", choices=["workers", "emulator"], default=["workers", "emulator"])
    parser.add_argument("--round-trips", type=int, default=200, help="chats whose store round trips are counted")
    parser.add_argument("--api-seconds", type=float, default=4.5,
                        help="per target, of /v1/chat/completions, /v1/messages and /v1/responses at c=1, "
                        "interleaved request by request (0: none)")
    parser.add_argument("--stream-samples", type=int, default=20,
                        help="rounds of streamed and buffered chats at a token every 50 ms (0: none)")
    parser.add_argument("--stream-only", action="store_true", help="only the streamed chats")
    parser.add_argument("--against", type=Path, help="another checkout, measured beside this one on the same backends")
    return parser.parse_args()


def start_gateways(stack: ExitStack, args: argparse.Namespace, environment: dict[str, str],
                   logs: Path) -> tuple[dict[str, str], list[str]]:
    """Each InferGate asked for (and its --against twin), and with --peer litellm LiteLLM's proxy
    through each of its providers, by name: their URLs; and the keys registered for them."""
    gateways = {}
    for runtime in args.runtimes:
        name = "make run" if runtime == "workers" else "make run-lambda"
        print(f"Starting InferGate ({name}) ...", flush=True)
        gateways[name] = start_gateway(stack, runtime, environment, logs)
        if args.against:
            print(f"Starting InferGate ({name}) from {args.against} ...", flush=True)
            gateways[f"{name} @{revision(args.against)}"] = start_gateway(
                stack, runtime, environment, logs, name=f"{runtime}-against", root=args.against.resolve())
    keys = register(next(iter(gateways.values())), KEYS)
    if args.peer == "litellm":
        model_url = environment["OLLAMA_URL"]
        for provider in litellm_peer.PROVIDERS:
            print(f"Starting LiteLLM's proxy ({provider}/) ...", flush=True)
            gateways[litellm_name(provider)] = start_litellm(stack, model_url, keys, logs,
                                                             litellm_config(provider, MODEL, model_url, keys))
    return gateways, keys


def measure(everything: list[Target], rounds: int, seconds: float) -> dict[str, dict[str, list[Batch]]]:
    """Every scenario in `rounds` rounds, a batch of each target a round, the targets' order
    rotating round by round: the batches, by scenario and target, in the order they ran."""
    measured: dict[str, dict[str, list[Batch]]] = {}
    for scenario in SCENARIOS:
        batches: dict[str, list[Batch]] = {target.name: [] for target in everything}
        for round_ in range(rounds):
            shift = round_ % len(everything)
            for target in everything[shift:] + everything[:shift]:
                batches[target.name].append(run_batch(target, scenario, seconds))
        measured[scenario.name] = batches
        print(f"  {scenario.name}: done", flush=True)
    return measured


def after_scenarios(stack: ExitStack, args: argparse.Namespace, environment: dict[str, str], logs: Path) -> None:
    """Exactness, the store round trips, the streamed chats and the prompt bounds."""
    print("\n" + exactness(environment["MONGODB_URI"], GATEWAY_SETTINGS.get("MONGODB_DB", "infergate")))
    print(f"\nRound trips per chat, by command ({args.round_trips} chats through make run, one key, in a row,"
          " counted on the wire):")
    counts = round_trips(stack, environment, logs, args.round_trips)
    print(f"  {'':<28} {'no team':>8} {'team member':>12}")
    for name in sorted(set(counts["no team"]) | set(counts["team member"])):
        print(f"  {name:<28} {counts['no team'].get(name, 0):>8.2f} {counts['team member'].get(name, 0):>12.2f}")
    if args.stream_samples > 0:
        streaming_section(stack, environment, logs, args.runtimes, args.stream_samples)
    bounds.report()


def main() -> int:
    args = parse_args()
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="infergate-bench-")))
        mongo, cache = backends.start_mongo(":memory:"), backends.start_redis()
        model = backends.start_model_server(engine="deterministic", models=[MODEL],
                                            log=stack.enter_context(open(logs / "model-server.log", "w")))
        for service in (mongo, cache, model):
            stack.callback(service.stop)
        environment = {**GATEWAY_SETTINGS, "MONGODB_URI": mongo.url, "REDIS_URL": cache.url, "OLLAMA_URL": model.url}
        if args.stream_only:
            streaming_section(stack, environment, logs, args.runtimes, args.stream_samples)
            return 0
        gateways, keys = start_gateways(stack, args, environment, logs)
        everything = targets(model.url, gateways, keys)
        print("Warming up (every function instance a burst needs) ...", flush=True)
        for target in everything:
            run_batch(target, SCENARIOS[-1], 3.0)
        measured = measure(everything, args.rounds, args.seconds)
        results = {scenario: {name: Figures.of(batches) for name, batches in by_target.items()}
                   for scenario, by_target in measured.items()}
        shapes = api_targets(model.url, gateways, keys)
        if args.api_seconds > 0 and len(shapes) > 1:
            print(f"  API shapes ({', '.join(target.name for target in shapes)}) ...", flush=True)
            api_figures = api_section(shapes, args.api_seconds)
        report(results)
        rounds_report(measured)
        verdicts(results)
        warm_verdicts(measured)
        if args.api_seconds > 0 and len(shapes) > 1:
            api_report(api_figures, args.api_seconds)
        after_scenarios(stack, args, environment, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
