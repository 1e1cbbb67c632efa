"""Benchmark: InferGate in front of a pool of model servers (make bench-pool).

Starts its own stores and four development model servers, each serving two requests at once
(`--slots 2`) at a fixed TOKEN_SECONDS a token, then InferGate as `make run` serves it, with
every function instance count from one burst and DEVKIT_INSTANCES=2 (two instances from the
start, so several instances share the pool from the first request). In one run it reports:

- the servers' own combined capacity: eight clients, each on a slot of its own, straight to
  the servers' /api/chat (no gateway), requests a second;
- throughput through the gateway at concurrency 8 (as many as the slots) and 32 (four times
  as many), with one key and with 32 keys, against that capacity;
- how evenly the load spread: the busiest server's requests over the least busy one's, as the
  servers counted them, and the most each server ever had in flight (its slots: 2);
- with a model loaded on one server only, the share of its requests sent there (at concurrency
  2, that server's slots);
- one server killed (`kill -9`) in the middle of a run of streamed chats: how many requests
  failed before their first byte and how many were cut mid-stream, each cut one's charge, and
  whether anything stays held once the run is over;
- with `--peer litellm` (make bench-pool PEER=litellm), LiteLLM's router (`least-busy`) over the
  same four servers, in each of its two provider configurations (`openai/` against the
  servers' /v1, `ollama_chat/` against their /api/chat), at concurrency 32, in the same run;
- exactness: tokens charged past a quota, and each user's counter against its request log.

    .venv/bin/python bench/pool.py [--seconds 8] [--peer litellm]      (or: make bench-pool)
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "layers" / "common")]

from devkit import backends  # noqa: E402
from hotpath import (  # noqa: E402
    GATEWAY_SETTINGS,
    LITELLM_SETTINGS,
    MAX_TOKENS,
    MODEL,
    PROMPT,
    Batch,
    Scenario,
    Target,
    exactness,
    litellm_auth,
    register,
    run_batch,
    start_gateway,
    start_litellm,
)

SERVERS, SLOTS = 4, 2
TOKEN_SECONDS = 0.02
HOT = "hot:1b"  # loaded on the first server only; the others take LOAD_SECONDS to load it
LOAD_SECONDS = 3.0
KEYS = 32
SCENARIOS = [Scenario("c=8, 1 key", 8, 1), Scenario("c=8, 32 keys", 8, KEYS),
             Scenario("c=32, 1 key", 32, 1), Scenario("c=32, 32 keys", 32, KEYS)]


@dataclass
class Server:
    name: str
    service: backends.Service
    extra: list[str]
    log: Path

    @property
    def url(self) -> str:
        return self.service.url

    def stats(self) -> dict:
        return _json("GET", f"{self.url}/_devkit/stats")

    def reset(self) -> None:
        _json("POST", f"{self.url}/_devkit/stats")


def _json(method: str, url: str, body: dict | None = None) -> dict:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, "/" + url.removeprefix("http://").split("/", 1)[1],
                       body=json.dumps(body).encode() if body is not None else None,
                       headers={"Content-Type": "application/json"})
    return json.loads(connection.getresponse().read())


def start_servers(stack: ExitStack, logs: Path) -> list[Server]:
    servers = []
    for number in range(1, SERVERS + 1):
        loaded = [MODEL, HOT] if number == 1 else [MODEL]
        extra = ["--slots", str(SLOTS), "--token-delay", str(TOKEN_SECONDS), "--load-seconds", str(LOAD_SECONDS)]
        for model in loaded:
            extra += ["--loaded", model]
        server = Server(f"gpu-{number}", None, extra, logs / f"server-{number}.log")  # type: ignore[arg-type]
        restart(server)
        stack.callback(lambda server=server: server.service.stop())
        servers.append(server)
    return servers


def restart(server: Server) -> None:
    """The server started (again), on the port it had."""
    port = None
    if server.service is not None:
        server.service.process.wait()  # killed: reaped before its port is taken again
        port = int(server.service.url.rsplit(":", 1)[1])
    server.service = backends.start_model_server(engine="deterministic", models=[MODEL, HOT], extra=server.extra,
                                                 port=port, log=open(server.log, "a"))


def at(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def capacity(servers: list[Server], seconds: float) -> float:
    """Requests a second the servers answer with every slot busy, each client on a slot of its own."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": False,
                       "options": {"num_predict": MAX_TOKENS}}).encode()
    pinned = [Target(server.name, *at(server.url), "/api/chat", body) for server in servers for _ in range(SLOTS)]
    batches: list[Batch] = [Batch() for _ in pinned]
    threads = [threading.Thread(target=lambda i=i: batches.__setitem__(i, run_batch(pinned[i], Scenario("one", 1, 1),
                                                                                      seconds)))
               for i in range(len(pinned))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(batch.latencies) for batch in batches) / max(batch.seconds for batch in batches)


@dataclass
class Spread:
    rps: float
    errors: dict[str, int]
    requests: list[int]  # per server
    most_in_flight: list[int]

    @property
    def evenness(self) -> float:
        return max(self.requests) / max(1, min(self.requests))


def measured(target: Target, scenario: Scenario, servers: list[Server], seconds: float) -> Spread:
    for server in servers:
        server.reset()
    batch = run_batch(target, scenario, seconds)
    stats = [server.stats() for server in servers]
    return Spread(len(batch.latencies) / batch.seconds, batch.errors, [sum(s["requests"].values()) for s in stats],
                  [s["max_in_flight"] for s in stats])


def loaded_share(target: Target, servers: list[Server], seconds: float) -> tuple[float, int]:
    """The share of HOT's requests sent to the one server that has it loaded, at its slots' concurrency."""
    for server in servers:
        server.reset()
    run_batch(target, Scenario("hot", SLOTS, 1), seconds)
    counts = [server.stats()["requests"].get(HOT, 0) for server in servers]
    return counts[0] / max(1, sum(counts)), sum(counts)


# -- one server killed mid-run ------------------------------------------------------------

@dataclass
class Streamed:
    request_id: str
    status: int = 0
    pieces: int = 0
    finished: bool = False  # [DONE] after the answer, no error
    error: str = ""


def stream_once(target: Target, key: str) -> Streamed:
    outcome = Streamed(f"kill-{uuid.uuid4().hex[:12]}")
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
                       "stream": True}).encode()
    try:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=60)
        connection.request("POST", "/v1/chat/completions", body=body,
                           headers={**target.headers(key), "x-request-id": outcome.request_id})
        response = connection.getresponse()
        outcome.status = response.status
        if response.status != 200:
            outcome.error = json.loads(response.read()).get("error", {}).get("code", str(response.status))
            return outcome
        for line in response:
            data = line.strip().removeprefix(b"data: ")
            if data == b"[DONE]":
                outcome.finished = not outcome.error
                break
            if data.startswith(b"{"):
                chunk = json.loads(data)
                if "error" in chunk:
                    outcome.error = chunk["error"].get("code") or "error"
                elif any(choice.get("delta", {}).get("content") for choice in chunk.get("choices") or []):
                    outcome.pieces += 1
    except OSError as error:
        outcome.error = type(error).__name__
    return outcome


def kill_mid_run(target: Target, servers: list[Server], seconds: float, concurrency: int = 16) -> list[Streamed]:
    """Streamed chats at `concurrency` for `seconds`; the last server is killed with SIGKILL a third
    of the way through."""
    outcomes, lock = [], threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            done = stream_once(target, target.keys[0])
            with lock:
                outcomes.append(done)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)  # a benchmark's schedule, not a test's wait: the kill lands mid-run
    servers[-1].service.process.kill()
    for thread in threads:
        thread.join()
    return outcomes


def charges(mongo_url: str, database: str) -> dict[str, tuple[str, int]]:
    """Every logged request this month: its status and the tokens charged, by request id."""
    from datetime import UTC, datetime

    from infergate.domain.periods import period_of
    from infergate.stores.mongo import connect
    from infergate.stores.usage import MongoUsageLedger

    db = connect(mongo_url)[database]
    ledger, period = MongoUsageLedger(db), period_of(datetime.now(UTC))
    found = {}
    for month in db.usage.find({"period": period}, {"user_id": 1}):
        for line in ledger.statement(month["user_id"], period).log:
            found[line.request_id] = (line.status, line.charged)
    return found


def held(redis_url: str, mongo_url: str, database: str, prefix: str) -> tuple[int, int]:
    """What is still held: server slots (Redis) and tokens (MongoDB)."""
    from datetime import UTC, datetime

    import redis

    from infergate.domain.periods import period_of
    from infergate.stores.mongo import connect
    from infergate.stores.usage import MongoUsageLedger

    client = redis.Redis.from_url(redis_url)
    slots = sum(client.zcard(key) for key in client.scan_iter(f"{prefix}pool:inflight:*"))
    db, now = connect(mongo_url)[database], datetime.now(UTC)
    ledger, period = MongoUsageLedger(db), period_of(now)
    tokens = sum(ledger.usage(month["user_id"], period, now=now).tokens_reserved
                 for month in db.usage.find({"period": period}, {"user_id": 1}))
    return slots, tokens


def settled(redis_url: str, mongo_url: str, database: str, prefix: str, *, within: float = 30) -> tuple[int, int, float]:
    """What is still held once the requests in flight have had `within` seconds to end, and how
    long they took to let go of everything."""
    started = time.monotonic()
    while True:
        slots, tokens = held(redis_url, mongo_url, database, prefix)
        if (slots, tokens) == (0, 0) or time.monotonic() - started > within:
            return slots, tokens, time.monotonic() - started
        time.sleep(0.1)


def report_kill(outcomes: list[Streamed], *, ours: bool, stores: tuple[str, str, str, str]) -> None:
    before_byte = [o for o in outcomes if not o.finished and o.pieces == 0]
    cut = [o for o in outcomes if not o.finished and o.pieces > 0]
    print(f"  {len(outcomes)} requests: {len(outcomes) - len(before_byte) - len(cut)} whole, "
          f"{len(before_byte)} failed before their first byte {sorted({o.error for o in before_byte}) or ''}, "
          f"{len(cut)} cut mid-stream")
    if not ours:
        return
    slots, tokens, after = settled(*stores)
    logged = charges(stores[1], stores[2])
    for o in cut:
        status, charged = logged.get(o.request_id, ("not logged", 0))
        print(f"    {o.request_id}: {o.pieces} pieces received, logged {status}, charged {charged} tokens")
    print(f"  Held once the run was over: {slots} server slots, {tokens} tokens (looked for {after:.1f} s)")


# -- LiteLLM's router -----------------------------------------------------------------------

def litellm_router(provider: str, servers: list[Server], keys: list[str]):
    """A config writer for LiteLLM's proxy: its router over the four servers, `least-busy`, each
    model on every server (LiteLLM cannot know which has it loaded), and a failed call retried
    twice on another deployment, as its documentation suggests for a router."""
    def configure(workdir: Path, redis_port: int) -> None:
        litellm_auth(workdir, keys)
        deployments = "".join(f"""  - model_name: {model}
    litellm_params:
      model: {provider}/{model}
      api_base: {server.url + ("/v1" if provider == "openai" else "")}
      api_key: none
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000001
""" for model in (MODEL, HOT) for server in servers)
        (workdir / "config.yaml").write_text("model_list:\n" + deployments + "router_settings:\n"
                                             "  routing_strategy: least-busy\n  num_retries: 2\n"
                                             + LITELLM_SETTINGS.format(redis_port=redis_port))
    return configure


def report(capacity_rps: float, results: dict[str, dict[str, Spread]]) -> None:
    print(f"\nThe servers' own capacity: {capacity_rps:.1f} requests/s ({SERVERS} servers x {SLOTS} slots, "
          f"{TOKEN_SECONDS * 1000:.0f} ms a token, 16-token answers, straight to /api/chat)")
    print(f"\n{'scenario':<16} {'target':<22} {'req/s':>7} {'x capacity':>10} {'busiest/least':>13} "
          f"{'per server':<22} {'most in flight':<16} errors")
    for scenario, by_target in results.items():
        for name, spread in by_target.items():
            print(f"{scenario:<16} {name:<22} {spread.rps:>7.1f} {spread.rps / capacity_rps:>10.2f} "
                  f"{spread.evenness:>13.2f} {str(spread.requests):<22} {str(spread.most_in_flight):<16} "
                  f"{spread.errors or '-'}")
    for scenario, by_target in results.items():
        ours = by_target.get("InferGate")
        for name, spread in by_target.items():
            if name != "InferGate" and ours is not None:
                print(f"  {scenario}: InferGate / {name}: {ours.rps / max(spread.rps, 1e-9):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--peer", choices=["litellm"], help="also measure LiteLLM's router over the same servers")
    args = parser.parse_args()
    database, prefix = "bench_pool", "bench-pool:"

    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="infergate-bench-pool-")))
        mongo, cache = backends.start_mongo(":memory:"), backends.start_redis()
        for service in (mongo, cache):
            stack.callback(service.stop)
        servers = start_servers(stack, logs)
        print(f"Measuring the servers' own capacity ({args.seconds:g} s) ...", flush=True)
        capacity_rps = capacity(servers, args.seconds)

        listed = [{"name": s.name, "url": s.url, "slots": SLOTS} for s in servers]
        environment = {**GATEWAY_SETTINGS, "MONGODB_URI": mongo.url, "MONGODB_DB": database, "REDIS_URL": cache.url,
                       "REDIS_KEY_PREFIX": prefix, "MODEL_SERVERS": json.dumps(listed), "DEVKIT_INSTANCES": "2",
                       "QUEUE_TIMEOUT_SECONDS": "20", "OLLAMA_TIMEOUT": "25", "DEVKIT_MAX_INSTANCES": "64"}
        environment.pop("OLLAMA_URL", None)
        print("Starting InferGate (make run, DEVKIT_INSTANCES=2) ...", flush=True)
        gateway = start_gateway(stack, "workers", environment, logs, name="pool")
        keys = register(gateway, KEYS)
        body = json.dumps({"prompt": PROMPT, "max_tokens": MAX_TOKENS}).encode()
        targets = {"InferGate": Target("InferGate", *at(gateway), "/v1/chat", body, keys)}
        if args.peer == "litellm":
            chat = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
            for provider in ("openai", "ollama_chat"):
                print(f"Starting LiteLLM's router ({provider}/, least-busy) ...", flush=True)
                url = start_litellm(stack, servers[0].url, keys, logs, litellm_router(provider, servers, keys))
                targets[f"LiteLLM {provider}/"] = Target(f"LiteLLM {provider}/", *at(url), "/v1/chat/completions",
                                                         json.dumps(chat).encode(), keys, header="authorization")

        print("Warming up (every function instance a burst of 32 needs) ...", flush=True)
        for target in targets.values():
            run_batch(target, SCENARIOS[-1], 5.0)
        results: dict[str, dict[str, Spread]] = {}
        for scenario in SCENARIOS:
            results[scenario.name] = {name: measured(target, scenario, servers, args.seconds)
                                      for name, target in targets.items()}
            print(f"  {scenario.name}: done", flush=True)
        report(capacity_rps, results)

        print(f"\nA model loaded on one server only ({HOT}), c={SLOTS} (that server's slots):")
        for name, target in targets.items():
            hot = json.loads(target.body) | {"model": HOT}
            share, count = loaded_share(Target(name, target.host, target.port, target.path, json.dumps(hot).encode(),
                                               target.keys, target.header), servers, args.seconds)
            print(f"  {name:<22} {share:.1%} of its {count} requests went to that server")

        for name, target in targets.items():
            print(f"\n{name}: streamed chats at c=16 for {args.seconds * 1.5:g} s, {servers[-1].name} killed (SIGKILL) "
                  "a third of the way through ...", flush=True)
            outcomes = kill_mid_run(target, servers, args.seconds * 1.5)
            report_kill(outcomes, ours=name == "InferGate", stores=(cache.url, mongo.url, database, prefix))
            restart(servers[-1])
        print("\n" + exactness(mongo.url, database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
