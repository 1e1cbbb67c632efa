"""This function instance's services: built once, on first use, from its settings and clients.

The services come from `bootstrap`, the composition root; the clients
(MongoDB, Redis, the model server's connections) are made once per
instance and shared. Imports happen inside the factories, so that a
function loads only the drivers it uses: the health check never imports
pymongo.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infergate import bootstrap
from infergate.config import get_settings
from infergate.observability import logger

# How long a readiness check waits for each dependency.
READY_SECONDS = 2.0

if TYPE_CHECKING:
    from infergate.domain.admission import AdmissionControl
    from infergate.domain.authentication import Authenticator
    from infergate.domain.chat import ChatService
    from infergate.domain.models import ModelPolicy
    from infergate.domain.plans import PlanCatalog
    from infergate.domain.ports import AccountsVersion
    from infergate.llm.connections import ModelServerConnections
    from infergate.readiness import ReadinessCheck
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.admission import RedisKeyActivity
    from infergate.stores.counters import RedisCounters
    from infergate.stores.usage import MongoUsageLedger


@functools.cache
def account_store() -> MongoAccountStore:
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.mongo import get_database

    return MongoAccountStore(get_database())


@functools.cache
def authenticator() -> Authenticator:
    from infergate.stores.mongo import get_database
    from infergate.stores.redis_client import get_redis

    return bootstrap.authenticator(get_settings(), database=get_database(), redis=get_redis())


@functools.cache
def accounts_version() -> AccountsVersion:
    from infergate.stores.redis_client import get_redis

    return bootstrap.accounts_version(get_settings(), redis=get_redis())


@functools.cache
def key_activity() -> RedisKeyActivity:
    from infergate.stores.redis_client import get_redis

    return bootstrap.key_activity(get_settings(), redis=get_redis())


@functools.cache
def usage_ledger() -> MongoUsageLedger:
    from infergate.stores.mongo import get_database
    from infergate.stores.usage import MongoUsageLedger

    return MongoUsageLedger(get_database())


@functools.cache
def admission() -> AdmissionControl:
    from infergate.stores.redis_client import get_redis

    return bootstrap.admission(get_settings(), redis=get_redis())


@functools.cache
def plans() -> PlanCatalog:
    return bootstrap.plans(get_settings())


@functools.cache
def counters() -> RedisCounters:
    from infergate.stores.redis_client import get_redis

    return bootstrap.counters(get_settings(), redis=get_redis())


@functools.cache
def model_policy() -> ModelPolicy:
    return bootstrap.model_policy(get_settings(), connections=_model_server())


@functools.cache
def chat_service() -> ChatService:
    from infergate.stores.mongo import get_database
    from infergate.stores.redis_client import get_redis

    return bootstrap.chat_service(get_settings(), database=get_database(), redis=get_redis(),
                                  connections=_model_server(), models=model_policy(), admitting=admission())


@functools.cache
def _model_server() -> ModelServerConnections:
    return bootstrap.model_server(get_settings())


@functools.cache
def readiness() -> ReadinessCheck:
    from infergate.readiness import ReadinessCheck

    return ReadinessCheck(_readiness_probes(), timeout=READY_SECONDS)


def _readiness_probes() -> dict[str, Callable[[], None]]:
    """One probe per dependency: MongoDB, Redis and the model server, each bounded by READY_SECONDS."""
    import pymongo

    from infergate.stores.mongo import get_client
    from infergate.stores.redis_client import get_redis

    def mongodb() -> None:
        with pymongo.timeout(READY_SECONDS):
            get_client().admin.command("ping")

    return {"mongodb": mongodb, "redis": get_redis().ping,
            "model_server": lambda: _model_server().ping(timeout=READY_SECONDS)}


def record_request(line: dict[str, Any]) -> None:
    """Adds a request's access line to the metrics every instance shares; never fails the request."""
    import redis

    from infergate import prometheus
    from infergate.errors import ServiceUnavailable

    try:
        counters().add(prometheus.increments(line))
    except (redis.RedisError, ServiceUnavailable) as error:
        logger.warning("request metrics not recorded: Redis unavailable", extra={"error": type(error).__name__})


def count_request() -> None:
    """Count one API request for /metrics; never fail the request over it."""
    import redis

    from infergate.errors import ServiceUnavailable

    try:
        counters().count_request()
    except (redis.RedisError, ServiceUnavailable) as error:
        logger.warning("request not counted: Redis unavailable", extra={"error": type(error).__name__})
