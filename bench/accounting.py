"""Benchmark: the accounting path under concurrency, on real stores.

Each operation is what a chat costs InferGate apart from the model: the
admission (rate limits and the circuit breaker, Redis), the quota
reservation, the settlement with its request-log line (MongoDB) — or the
release, for the one in ten requests whose model call fails — and the
conclusion (Redis). The service is the one the functions run, built by the
composition root; the model answers in-process and at once, so the figures
are the gateway's own.

The load is spread over BENCH_USERS users (default 4), so several requests
of one user are in flight at once; the last user's quota is small and runs
out early, so the quota boundary is crossed under contention. The first two
users are a team's members: the team's token quota and its budget (the model
is priced) run out early too, so a team's boundary is crossed by two users at
once. After each run the script checks the invariants and prints them: tokens
(or micros) charged beyond a quota or budget ("overspent") and the difference
between each usage counter and the sum of its request log, read as of one
instant ("drift"), must both be 0, at the users' level and at the team's.

    .venv/bin/python bench/accounting.py [--seconds 5] [--concurrency 1 8 32]

Starts its own secantusdb and redis-server unless MONGODB_URI / REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

import redis  # noqa: E402
from devkit import backends  # noqa: E402

from infergate.api.chat import task  # noqa: E402
from infergate.bootstrap import Services  # noqa: E402
from infergate.config import Settings  # noqa: E402
from infergate.domain.errors import InferGateError, UpstreamError  # noqa: E402
from infergate.domain.ledger import Level  # noqa: E402
from infergate.domain.model_policy import ModelPolicy  # noqa: E402
from infergate.domain.model_server import Completion, ModelEntry  # noqa: E402
from infergate.domain.periods import period_of  # noqa: E402
from infergate.domain.plans import Plan  # noqa: E402
from infergate.domain.pool import Holdings, Server  # noqa: E402
from infergate.domain.principal import Principal  # noqa: E402
from infergate.observability import metrics  # noqa: E402
from infergate.schemas.chat import ChatRequest  # noqa: E402
from infergate.stores import mongo  # noqa: E402
from infergate.stores.mongo import ensure_indexes  # noqa: E402
from infergate.stores.usage import MongoUsageLedger  # noqa: E402

# The functions publish CloudWatch metrics once per invocation; a benchmark loop has none to flush them.
metrics.add_metric = lambda **_: None  # type: ignore[method-assign]

USERS = int(os.environ.get("BENCH_USERS", "4"))  # the last one with a small quota, exhausted early in each run
SMALL_QUOTA = 3_000
TEAM = Level("team", "team_bench", 12_000, 15_000)  # tokens, and micros at PRICE: each runs out in a run
PRICE = {"bench": {"input_per_million_micros": 1_000_000, "output_per_million_micros": 2_000_000}}
REQUEST = ChatRequest(prompt="Summarise the plot of Hamlet in two sentences.", max_tokens=120)


class FixedHoldings:
    """The one server's holdings, as discovery would find them."""

    def holdings(self):
        return {"bench": Holdings((ModelEntry("bench", None),), frozenset({"bench"}))}


class InstantModel:
    """Answers at once with plausible counts; one call in ten fails, as a model server may."""

    def chat(self, *, model, messages, max_tokens, request_id, **_asked):
        if random.random() < 0.1:
            raise UpstreamError("simulated model failure")
        return Completion(model, "ok", prompt_tokens=random.randint(20, 40),
                          completion_tokens=random.randint(1, max_tokens), done_reason="stop")


def run(concurrency: int, seconds: float, mongo_uri: str, redis_url: str) -> dict:
    database = mongo.connect(mongo_uri, maxPoolSize=concurrency + 8)[f"bench_{uuid.uuid4().hex[:8]}"]
    ensure_indexes(database)
    # A breaker that never opens (the failures are simulated); its Redis work is part of the path.
    settings = Settings.from_env({"RATE_LIMIT_FAIL_OPEN": "false", "CIRCUIT_BREAKER_FAILURES": str(10**9),
                                  "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex}:", "MODEL_PRICES": json.dumps(PRICE)})
    services = Services(settings, database=database,
                        redis=redis.Redis.from_url(redis_url, max_connections=concurrency + 8))
    # The model answers in-process; everything else is as the functions build it.
    services.servers = {"bench": InstantModel()}
    services.models = ModelPolicy([Server("bench")], FixedHoldings(), default="bench", allowed=None)
    service, request = services.inference, task(REQUEST)
    quotas = [10**9] * (USERS - 1) + [SMALL_QUOTA]
    users = [Principal(user_id=f"usr_{n}", key_id=f"key_{n}", plan=Plan(
        name="bench", monthly_token_quota=quota, rate_limit_rpm=10**9, rate_limit_tpm=10**9, max_output_tokens=4096),
        team=TEAM if n < 2 else None) for n, quota in enumerate(quotas)]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        mine_latency, mine_outcomes = [], {}
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                service.chat(users[index % USERS], request, request_id="bench")
                status = "ok"
            except InferGateError as error:
                status = error.code
            mine_latency.append(time.perf_counter() - started)
            mine_outcomes[status] = mine_outcomes.get(status, 0) + 1
        with lock:
            latencies.extend(mine_latency)
            for status, count in mine_outcomes.items():
                outcomes[status] = outcomes.get(status, 0) + count

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began

    overspent, drift = invariants(MongoUsageLedger(database), users, period_of(services.clock()))
    database.client.drop_database(database.name)
    latencies.sort()
    return {
        "concurrency": concurrency,
        "ops": len(latencies),
        "ops_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "outcomes": outcomes,
        "overspent": overspent,
        "drift": drift,
    }


def invariants(ledger: MongoUsageLedger, users: list[Principal], period: str) -> tuple[int, int]:
    """Overspent (tokens or micros past a limit) and drift (a counter against its log), every level."""
    overspent = drift = 0
    members = []
    for user in users:
        statement = ledger.statement(user.user_id, period)
        overspent += max(0, statement.tokens_used - user.plan.monthly_token_quota)
        drift += abs(statement.tokens_used - sum(line.charged for line in statement.log))
        drift += abs(statement.cost_micros - sum(line.cost_micros for line in statement.log))
        if user.team is not None:
            members.append(statement)
    team = ledger.level_usage(TEAM, period, now=datetime.now(UTC))
    overspent += max(0, team.tokens_used - TEAM.token_quota) + max(0, team.cost_micros - TEAM.budget_micros)
    drift += abs(team.tokens_used - sum(line.charged for statement in members for line in statement.log))
    drift += abs(team.cost_micros - sum(line.cost_micros for statement in members for line in statement.log))
    return overspent, drift


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    with ExitStack() as stack:
        mongo_uri = os.environ.get("MONGODB_URI")
        if not mongo_uri:
            mongo = backends.start_mongo(":memory:")
            stack.callback(mongo.stop)
            mongo_uri = mongo.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            server = backends.start_redis()
            stack.callback(server.stop)
            redis_url = server.url

        print(f"accounting path: admit + reserve + settle/release + conclude, {args.seconds:g} s per run, {USERS} users")
        print(f"{'concurrency':>11} {'ops':>7} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ok':>6} {'quota':>6} "
              f"{'budget':>6} {'failed':>6} {'overspent':>9} {'drift':>6}")
        failures = 0
        for concurrency in args.concurrency:
            r = run(concurrency, args.seconds, mongo_uri, redis_url)
            o = r["outcomes"]
            print(f"{r['concurrency']:>11} {r['ops']:>7} {r['ops_per_s']:>8.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                  f"{o.get('ok', 0):>6} {o.get('quota_exceeded', 0):>6} {o.get('budget_exceeded', 0):>6} "
                  f"{o.get('upstream_error', 0):>6} "
                  f"{r['overspent']:>9} {r['drift']:>6}", flush=True)
            failures += r["overspent"] + r["drift"]
        print("invariants hold: overspent = 0 and drift = 0" if failures == 0 else "INVARIANT VIOLATED")
        return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
