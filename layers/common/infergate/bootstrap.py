"""The composition root: InferGate's services, built from settings and the clients they use.

Functions build them once per instance through `wiring`, with the instance's
own clients; tests and benchmarks call the same functions with clients of
theirs. Imports happen inside, so that a function loads only what it builds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from infergate.clock import utc_now
from infergate.config import Settings

if TYPE_CHECKING:
    import redis
    from pymongo.database import Database

    from infergate.domain.admission import AdmissionControl
    from infergate.domain.authentication import Authenticator
    from infergate.domain.chat import ChatService
    from infergate.domain.models import ModelPolicy
    from infergate.domain.plans import PlanCatalog
    from infergate.domain.ports import AccountsVersion, TokenVerifier
    from infergate.llm.connections import ModelServerConnections
    from infergate.stores.admission import RedisKeyActivity
    from infergate.stores.counters import RedisCounters


def plans(settings: Settings) -> PlanCatalog:
    from infergate.domain.plans import catalog_from

    return catalog_from(settings)


def admission(settings: Settings, *, redis: redis.Redis) -> AdmissionControl:
    from infergate.domain.admission import AdmissionControl
    from infergate.stores.admission import RedisAdmissionStore

    # A model call (a probe, or a slot's holder) may take as long as a chat may; after that,
    # a function that died mid-call no longer holds the probe or the slot.
    lease_seconds = max(settings.ollama_timeout, settings.ollama_stream_timeout) + 5
    store = RedisAdmissionStore(
        redis, prefix=settings.redis_key_prefix, breaker_failures=settings.breaker_failures,
        breaker_open_seconds=settings.breaker_open_seconds, breaker_probe_seconds=lease_seconds,
    )
    return AdmissionControl(store, fail_open=settings.rate_limit_fail_open, lease_seconds=lease_seconds)


def model_server(settings: Settings) -> ModelServerConnections:
    """The connections to the model server, shared by chats and the model list."""
    from infergate.llm.connections import ModelServerConnections

    return ModelServerConnections(settings.ollama_url, connect_timeout=settings.ollama_connect_timeout)


def model_policy(settings: Settings, *, connections: ModelServerConnections) -> ModelPolicy:
    from infergate.domain.models import ModelPolicy
    from infergate.llm.ollama import OllamaCatalog

    return ModelPolicy(OllamaCatalog(connections), default=settings.ollama_model, allowed=settings.allowed_models())


def chat_service(
    settings: Settings, *, database: Database, redis: redis.Redis, connections: ModelServerConnections,
    models: ModelPolicy | None = None, admitting: AdmissionControl | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> ChatService:
    """`models` and `admitting`, when given, are the instance's own, shared with its other routes."""
    from infergate.domain.chat import RESERVATION_TTL, ChatService
    from infergate.llm.ollama import OllamaClient
    from infergate.stores.usage import MongoUsageLedger

    return ChatService(
        admission=admitting or admission(settings, redis=redis),
        ledger=MongoUsageLedger(database),
        model=OllamaClient(connections, timeout=settings.ollama_timeout, stream_timeout=settings.ollama_stream_timeout,
                           stall_timeout=settings.ollama_stall_timeout),
        reservation_ttl=max(RESERVATION_TTL, timedelta(seconds=settings.ollama_stream_timeout + 60)),
        models=models or model_policy(settings, connections=connections),
        clock=clock,
    )


def authenticator(settings: Settings, *, database: Database, redis: redis.Redis) -> Authenticator:
    from infergate.domain.authentication import Authenticator
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.authentication import RedisFailedAuthentications

    failures = RedisFailedAuthentications(redis, prefix=settings.redis_key_prefix,
                                          per_minute=settings.auth_failures_per_minute)
    return Authenticator(MongoAccountStore(database), plans(settings), accounts_version(settings, redis=redis),
                         tokens=token_verifier(settings), failures=failures)


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """Sign-in tokens' verifier, where single sign-on is configured."""
    if not settings.single_sign_on:
        return None
    from infergate.sso import JwtVerifier

    return JwtVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwt_jwks_url,
                       plan_claim=settings.jwt_plan_claim)


def accounts_version(settings: Settings, *, redis: redis.Redis) -> AccountsVersion:
    from infergate.stores.accounts import RedisAccountsVersion

    return RedisAccountsVersion(redis, prefix=settings.redis_key_prefix)


def key_activity(settings: Settings, *, redis: redis.Redis) -> RedisKeyActivity:
    from infergate.stores.admission import RedisKeyActivity

    return RedisKeyActivity(redis, prefix=settings.redis_key_prefix)


def counters(settings: Settings, *, redis: redis.Redis) -> RedisCounters:
    from infergate.stores.counters import RedisCounters

    return RedisCounters(redis, prefix=settings.redis_key_prefix)
