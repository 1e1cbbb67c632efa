"""The real accounting path (Redis admission, MongoDB ledger, HTTP to a model server), built by
the composition root as the functions build it, for concurrency and crash tests. Importable by
spawned processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime

import pymongo
import redis

from infergate.api.chat import task
from infergate.bootstrap import Services
from infergate.config import Settings
from infergate.domain.errors import InferGateError
from infergate.domain.ledger import Level
from infergate.domain.periods import utc_now
from infergate.domain.plans import Plan
from infergate.domain.principal import Principal
from infergate.schemas.chat import ChatRequest
from infergate.stores import mongo
from infergate.stores.mongo import ensure_indexes
from infergate.stores.redis_client import connect
from infergate.stores.usage import MongoUsageLedger
from tests.support import services


def principal(*, quota: int, rpm: int = 10_000, tpm: int = 10_000_000, user: str = "usr_load", key: str = "key_load",
              concurrent: int = 1000, levels: tuple[Level, ...] = ()) -> Principal:
    """A user of a plan of these figures; `levels`: a team's month and a key's budget month above theirs."""
    team = next((level for level in levels if level.kind == "team"), None)
    key_budget = next((level for level in levels if level.kind == "key"), None)
    return Principal(user_id=user, key_id=key, plan=Plan(
        name="test", monthly_token_quota=quota, rate_limit_rpm=rpm, rate_limit_tpm=tpm, max_output_tokens=4096,
        max_concurrent_requests=concurrent), team=team, key_budget=key_budget,
        key_line=None if key_budget is None else key_budget.id)


def build_services(mongo_uri: str, database: str, redis_url: str, ollama_url: str,
                   clock: Callable[[], datetime] = utc_now, *, redis_key_prefix: str | None = None,
                   redis_cluster: bool | None = None) -> Services:
    """The composition root over the given stores, as many threads' instance (pools of 64); on a
    cluster if `redis_cluster`, or by default if the suite's Redis is one."""
    redis_cluster = services.redis_is_cluster() if redis_cluster is None else redis_cluster
    settings = Settings.from_env({
        "OLLAMA_URL": ollama_url, "RATE_LIMIT_FAIL_OPEN": "false", "OLLAMA_TIMEOUT": "20", "OLLAMA_CONNECT_TIMEOUT": "2",
        # Limits and breaker of this service's own, so that no test trips another's.
        "REDIS_KEY_PREFIX": redis_key_prefix or f"test:{uuid.uuid4().hex}:", "REDIS_CLUSTER": str(redis_cluster).lower(),
    })
    db = mongo.connect(mongo_uri, maxPoolSize=64)[database]
    ensure_indexes(db)
    client = connect(redis_url, cluster=True) if redis_cluster else redis.Redis.from_url(redis_url, max_connections=64)
    return Services(settings, database=db, redis=client, clock=clock)


def chat_once(services: Services, who: Principal, request: ChatRequest) -> tuple[str, int]:
    """(status, tokens the caller was told it used): 'ok' or the error code."""
    try:
        response = services.inference.chat(who, task(request), request_id=f"load-{os.getpid()}")
    except InferGateError as error:
        return error.code, 0
    return "ok", response.total_tokens


def chats_in_a_process(args: tuple) -> list[tuple[str, int]]:
    """One process, one 'function instance': its own clients, several chats in a row."""
    mongo_uri, database, redis_url, ollama_url, quota, count, request_json = args
    services = build_services(mongo_uri, database, redis_url, ollama_url)
    request = ChatRequest.model_validate_json(request_json)
    return [chat_once(services, principal(quota=quota), request) for _ in range(count)]


def ledger_totals(db: pymongo.database.Database, user: str, period: str) -> tuple[int, int, int]:
    """(tokens charged per the counter, per the request log, requests logged as ok), read as of one instant."""
    statement = MongoUsageLedger(db).statement(user, period)
    return statement.tokens_used, sum(line.charged for line in statement.log), sum(line.status == "ok" for line in statement.log)


def log_lines(db: pymongo.database.Database) -> list[dict]:
    """Every line of the request log as stored: archived in request_log, or still in a month's journal."""
    lines = {line["_id"]: line for line in db.request_log.find()}
    for month in db.usage.find({}, {"journal": 1}):
        for line in month.get("journal") or []:
            lines.setdefault(line["_id"], line)
    return list(lines.values())
