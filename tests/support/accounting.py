"""The real accounting path (Redis limits, MongoDB ledger, HTTP to a model server), for
concurrency tests and the benchmark. Importable by spawned processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime

import httpx
import pymongo
import redis

from infergate.clock import utc_now
from infergate.domain.chat import ChatService
from infergate.domain.models import ModelPolicy
from infergate.domain.rate_limits import RateLimits
from infergate.errors import InferGateError
from infergate.llm.ollama import OllamaCatalog, OllamaClient
from infergate.models.chat import ChatRequest
from infergate.models.principal import Principal
from infergate.stores.circuit_breaker import RedisCircuitBreaker
from infergate.stores.mongo import ensure_indexes
from infergate.stores.rate_limit import RedisRateLimiter
from infergate.stores.usage import MongoUsageLedger


def principal(*, quota: int, rpm: int = 10_000, tpm: int = 10_000_000, user: str = "usr_load", key: str = "key_load") -> Principal:
    return Principal(user_id=user, key_id=key, plan="test", monthly_token_quota=quota, rate_limit_rpm=rpm,
                     rate_limit_tpm=tpm, max_output_tokens=4096)


def build_service(mongo_uri: str, database: str, redis_url: str, ollama_url: str,
                  clock: Callable[[], datetime] = utc_now) -> ChatService:
    db = pymongo.MongoClient(mongo_uri, tz_aware=True, maxPoolSize=64)[database]
    ensure_indexes(db)
    client = redis.Redis.from_url(redis_url, max_connections=64)
    http = httpx.Client(base_url=ollama_url, timeout=httpx.Timeout(20, connect=2), limits=httpx.Limits(max_connections=64))
    return ChatService(
        limits=RateLimits(RedisRateLimiter(client), fail_open=False), ledger=MongoUsageLedger(db),
        model=OllamaClient(ollama_url, connect_timeout=2, timeout=20, http=http),
        models=ModelPolicy(OllamaCatalog(http), default="smollm2:135m", allowed=None),
        # A breaker of this service's own, so that no test trips another's.
        breaker=RedisCircuitBreaker(client, failures=5, open_seconds=15, probe_seconds=25, key=f"test:breaker:{uuid.uuid4().hex}"),
        clock=clock,
    )


def chat_once(service: ChatService, who: Principal, request: ChatRequest) -> tuple[str, int]:
    """(status, tokens the caller was told it used): 'ok' or the error code."""
    try:
        response = service.chat(who, request.task(), request_id=f"load-{os.getpid()}")
    except InferGateError as error:
        return error.code, 0
    return "ok", response.total_tokens


def chats_in_a_process(args: tuple) -> list[tuple[str, int]]:
    """One process, one 'function instance': its own clients, several chats in a row."""
    mongo_uri, database, redis_url, ollama_url, quota, count, request_json = args
    service = build_service(mongo_uri, database, redis_url, ollama_url)
    request = ChatRequest.model_validate_json(request_json)
    return [chat_once(service, principal(quota=quota), request) for _ in range(count)]


def ledger_totals(db: pymongo.database.Database, user: str, period: str) -> tuple[int, int, int]:
    """(tokens charged per the counter, per the request log, requests logged as ok)."""
    document = db.usage.find_one({"_id": f"{user}:{period}"}) or {}
    log = list(db.request_log.find({"user_id": user, "period": period}))
    return document.get("tokens_used", 0), sum(e["total_tokens"] for e in log), sum(e["status"] == "ok" for e in log)
