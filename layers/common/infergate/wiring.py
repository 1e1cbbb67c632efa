"""Builds each collaborator once per function instance, on first use.

Imports happen inside the factories so that a function loads only the
drivers it uses: the health check never imports pymongo or httpx.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from infergate.config import get_settings
from infergate.observability import logger

if TYPE_CHECKING:
    import httpx

    from infergate.domain.chat import ChatService
    from infergate.domain.models import ModelPolicy
    from infergate.domain.plans import PlanCatalogue
    from infergate.domain.rate_limits import RateLimits
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.circuit_breaker import RedisCircuitBreaker
    from infergate.stores.counters import RedisCounters
    from infergate.stores.rate_limit import RedisRateLimiter
    from infergate.stores.usage import MongoUsageLedger


@functools.cache
def account_store() -> MongoAccountStore:
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.mongo import get_database

    return MongoAccountStore(get_database())


@functools.cache
def usage_ledger() -> MongoUsageLedger:
    from infergate.stores.mongo import get_database
    from infergate.stores.usage import MongoUsageLedger

    return MongoUsageLedger(get_database())


@functools.cache
def rate_limiter() -> RedisRateLimiter:
    from infergate.stores.rate_limit import RedisRateLimiter
    from infergate.stores.redis_client import get_redis

    return RedisRateLimiter(get_redis())


@functools.cache
def rate_limits() -> RateLimits:
    from infergate.domain.rate_limits import RateLimits

    return RateLimits(rate_limiter(), fail_open=get_settings().rate_limit_fail_open)


@functools.cache
def plans() -> PlanCatalogue:
    from infergate.domain.plans import catalogue_from

    return catalogue_from(get_settings())


@functools.cache
def counters() -> RedisCounters:
    from infergate.stores.counters import RedisCounters
    from infergate.stores.redis_client import get_redis

    return RedisCounters(get_redis())


@functools.cache
def model_policy() -> ModelPolicy:
    from infergate.domain.models import ModelPolicy
    from infergate.llm.ollama import OllamaCatalog

    settings = get_settings()
    return ModelPolicy(OllamaCatalog(_ollama_http()), default=settings.ollama_model, allowed=settings.allowed_models())


@functools.cache
def circuit_breaker() -> RedisCircuitBreaker:
    from infergate.stores.circuit_breaker import RedisCircuitBreaker
    from infergate.stores.redis_client import get_redis

    settings = get_settings()
    return RedisCircuitBreaker(
        get_redis(), failures=settings.breaker_failures, open_seconds=settings.breaker_open_seconds,
        probe_seconds=settings.ollama_timeout + 5,
    )


@functools.cache
def chat_service() -> ChatService:
    from infergate.domain.chat import ChatService
    from infergate.llm.ollama import OllamaClient

    settings = get_settings()
    model = OllamaClient(settings.ollama_url, connect_timeout=settings.ollama_connect_timeout,
                         timeout=settings.ollama_timeout, http=_ollama_http())
    return ChatService(limits=rate_limits(), ledger=usage_ledger(), model=model, models=model_policy(),
                       breaker=circuit_breaker())


@functools.cache
def _ollama_http() -> httpx.Client:
    import httpx

    settings = get_settings()
    return httpx.Client(
        base_url=settings.ollama_url.rstrip("/"),
        timeout=httpx.Timeout(settings.ollama_timeout, connect=settings.ollama_connect_timeout),
        limits=httpx.Limits(max_connections=8, keepalive_expiry=30),
    )


def count_request() -> None:
    """Count one API request for /metrics; never fail the request over it."""
    import redis

    try:
        counters().count_request()
    except redis.RedisError as error:
        logger.warning("request not counted: Redis unavailable", extra={"error": type(error).__name__})
