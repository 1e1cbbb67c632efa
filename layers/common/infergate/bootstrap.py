"""The composition root: one place where InferGate's services are built, from settings and the
clients they use.

A function instance has one `Services` (`instance()`); its handlers take what they need
from it. Each service and client is built on first use and kept for the instance's life,
so that a function loads only what its requests use: the health check never imports
pymongo. Tests and benchmarks build their own `Services` with clients of theirs, and
`reset()` gives the instance's a fresh start, as a new Lambda instance would have.
"""

# Longer than 300 lines: it is the one place every service and client is built, each in a few
# lines; split, a reader would have to find which part builds what.

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from infergate.domain.periods import utc_now

if TYPE_CHECKING:
    import redis
    from pymongo import MongoClient
    from pymongo.database import Database

    from infergate.api.idempotency import Records
    from infergate.config import CheckedSettings, ServerAddress, Settings
    from infergate.domain.accounts import AccountStore, AccountsVersion, KeyActivity
    from infergate.domain.administration import Administration
    from infergate.domain.admission import Gatekeeper
    from infergate.domain.alerts import Alerts
    from infergate.domain.authentication import Authenticator, TokenVerifier
    from infergate.domain.dispatch import Dispatcher
    from infergate.domain.inference import InferenceService
    from infergate.domain.kept_responses import KeptResponses
    from infergate.domain.ledger import UsageLedger
    from infergate.domain.meter import Meter
    from infergate.domain.model_policy import ModelPolicy
    from infergate.domain.model_server import ModelServer
    from infergate.domain.own_keys import OwnKeys
    from infergate.domain.plans import PlanCatalog
    from infergate.domain.pool import Catalog, PoolStore
    from infergate.domain.prices import PriceList
    from infergate.domain.registration import Registrar
    from infergate.domain.servers import ServerReports
    from infergate.domain.team_administration import Teams
    from infergate.domain.telemetry import Telemetry
    from infergate.domain.tokens import Tokenizers
    from infergate.domain.usage import UsageReports
    from infergate.llm.connections import ModelServerConnections
    from infergate.prometheus import RequestMetrics
    from infergate.readiness import ReadinessCheck
    from infergate.secret_store import KeptSettings
    from infergate.stores.counters import RedisCounters
    from infergate.stores.limits import RedisLimitStore
    from infergate.stores.pool import RouteKeys

# How long a readiness check waits for each dependency.
READY_SECONDS = 2.0


class Services:
    """Settings, clients and services, each made on first use. Given a client, it uses that one."""

    def __init__(self, settings: Settings | None = None, *, database: Database | None = None,
                 redis: redis.Redis | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        given = {"settings": settings, "database": database, "redis": redis}
        self._given = {name: value for name, value in given.items() if value is not None}
        self.__dict__.update(self._given)  # what cached_property would otherwise make
        self.clock = clock

    def reset(self) -> None:
        """Forget every client and service (closing MongoDB's connections), and read the settings again."""
        client = self.__dict__.get("mongo_client")
        if client is not None:
            client.close()
        for name in [name for name in self.__dict__ if isinstance(getattr(type(self), name, None), cached_property)]:
            del self.__dict__[name]
        self.__dict__.update(self._given)

    # -- settings and clients ------------------------------------------------------------

    @cached_property
    def settings(self) -> Settings | CheckedSettings:
        from infergate.config import checked

        return checked()

    @cached_property
    def kept(self) -> KeptSettings:
        """Settings kept in Secrets Manager or Parameter Store (MONGODB_URI_SECRET, ...)."""
        from infergate.secret_store import KeptSettings

        return KeptSettings()

    def _setting(self, value: str, kept_at: str) -> str:
        """A setting's value, or the one kept at `kept_at` when that names where it is kept."""
        return self.kept.read(kept_at) if kept_at else value

    def mongodb_uri(self) -> str:
        """MONGODB_URI, or the one MONGODB_URI_SECRET names."""
        return self._setting(self.settings.mongodb_uri, self.settings.mongodb_uri_secret)

    def redis_url(self) -> str:
        """REDIS_URL, or the one REDIS_URL_SECRET names."""
        return self._setting(self.settings.redis_url, self.settings.redis_url_secret)

    def metrics_token(self) -> str:
        """METRICS_TOKEN, or the one METRICS_TOKEN_SECRET names (read again once its cached copy is old)."""
        return self._setting(self.settings.metrics_token, self.settings.metrics_token_secret)

    @cached_property
    def mongo_client(self) -> MongoClient:
        from infergate.stores.mongo import connect

        return connect(self.mongodb_uri())

    @cached_property
    def database(self) -> Database:
        from infergate.stores.mongo import database_of

        return database_of(self.mongo_client, self.settings.mongodb_db)

    @cached_property
    def redis(self) -> redis.Redis:
        from infergate.stores.redis_client import connect

        return connect(self.redis_url(), cluster=self.redis_clustered)

    @cached_property
    def redis_clustered(self) -> bool:
        """REDIS_CLUSTER, or a URL that names an ElastiCache cluster endpoint."""
        from infergate.stores.redis_client import names_a_cluster

        return self.settings.redis_cluster or names_a_cluster(self.redis_url())

    @cached_property
    def addresses(self) -> list[ServerAddress]:
        """The pool's servers and how to reach them: MODEL_SERVERS (or the list MODEL_SERVERS_SECRET
        keeps), else the one at OLLAMA_URL."""
        from infergate.config import pool

        return pool(self.settings, self._setting(self.settings.model_servers, self.settings.model_servers_secret))

    @cached_property
    def connections(self) -> dict[str, ModelServerConnections]:
        """Each server's connections, by name, shared by chats, discovery and readiness."""
        from infergate.domain.pool import OLLAMA
        from infergate.llm.connections import ModelServerConnections

        return {address.server.name: ModelServerConnections(
            address.url, connect_timeout=self.settings.ollama_connect_timeout,
            api_key=address.api_key,
            ping_path="/api/version" if address.server.kind == OLLAMA else "/v1/models") for address in self.addresses}

    # -- stores and the model server -----------------------------------------------------

    @cached_property
    def ledger(self) -> UsageLedger:
        from infergate.stores.usage import MongoUsageLedger

        return MongoUsageLedger(self.database, alerts=self.alerts)

    @cached_property
    def alerts(self) -> Alerts:
        """Budget alerts: to BUDGET_ALERT_TOPIC_ARN (the template's alarm topic) and BUDGET_ALERT_WEBHOOK_URL."""
        from infergate.domain.alerts import Alerts
        from infergate.stores.alerts import MongoAlertClaims, SnsSender, WebhookSender

        # The stack's alarm topic, which the template writes (not a setting: no one chooses it); a
        # local run has none.
        topic, webhook = os.environ.get("BUDGET_ALERT_TOPIC_ARN", ""), self.settings.budget_alert_webhook_url
        senders = [*([SnsSender(topic)] if topic.startswith("arn:") else []),
                   *([WebhookSender(webhook)] if webhook else [])]
        return Alerts(MongoAlertClaims(self.database), senders)

    @cached_property
    def accounts(self) -> AccountStore:
        from infergate.stores.accounts import MongoAccountStore

        return MongoAccountStore(self.database)

    @cached_property
    def accounts_version(self) -> AccountsVersion:
        from infergate.stores.accounts import RedisAccountsVersion

        return RedisAccountsVersion(self.redis, prefix=self.settings.redis_key_prefix)

    @cached_property
    def key_activity(self) -> KeyActivity:
        from infergate.stores.key_activity import RedisKeyActivity

        return RedisKeyActivity(self.redis, prefix=self.settings.redis_key_prefix)

    @cached_property
    def counters(self) -> RedisCounters:
        from infergate.stores.counters import RedisCounters

        return RedisCounters(self.redis, prefix=self.settings.redis_key_prefix)

    @cached_property
    def servers(self) -> dict[str, ModelServer]:
        """Each server's client, by name, in its own API."""
        from infergate.domain.pool import OLLAMA
        from infergate.llm.client import CONNECT_RETRIES, HttpModelServer
        from infergate.llm.ollama_wire import OllamaWire
        from infergate.llm.openai_wire import OpenAIWire

        settings = self.settings
        # A lone server is given a second chance to connect; in a pool, another server is asked instead.
        retries = CONNECT_RETRIES if len(self.addresses) == 1 else 0
        return {address.server.name: HttpModelServer(
            self.connections[address.server.name], OllamaWire() if address.server.kind == OLLAMA else OpenAIWire(address.server.kind),
            timeout=settings.ollama_timeout, stream_timeout=settings.ollama_stream_timeout,
            stall_timeout=settings.ollama_stall_timeout, connect_retries=retries) for address in self.addresses}

    @cached_property
    def catalog(self) -> Catalog:
        """What every server holds, found by one instance and shared by all."""
        from infergate.llm.catalog import SharedCatalog
        from infergate.llm.discovery import discover
        from infergate.stores.holdings import RedisHoldings

        return SharedCatalog([address.server for address in self.addresses],
                             lambda server: discover(server, self.connections[server.name]),
                             RedisHoldings(self.redis, prefix=self.settings.redis_key_prefix))

    @cached_property
    def route_keys(self) -> RouteKeys:
        from infergate.stores.pool import RouteKeys

        settings = self.settings
        # A model call (a probe, or a slot's holder) may take as long as a chat may, and wait its
        # turn first; after that, a function that died mid-call no longer holds the probe or the slot.
        lease_ms = int((max(settings.ollama_timeout, settings.ollama_stream_timeout) + 5) * 1000)
        return RouteKeys(settings.redis_key_prefix, lease_ms=lease_ms, probe_ms=lease_ms,
                         failures=settings.breaker_failures, open_ms=int(settings.breaker_open_seconds * 1000))

    @cached_property
    def pool(self) -> PoolStore:
        from infergate.stores.pool import RedisPool

        return RedisPool(self.redis, self.route_keys, prefix=self.settings.redis_key_prefix)

    # -- the domain's services -----------------------------------------------------------

    @cached_property
    def telemetry(self) -> Telemetry:
        from infergate.observability import AccessLineTelemetry

        return AccessLineTelemetry()

    @cached_property
    def plans(self) -> PlanCatalog:
        from infergate.config import plan_catalog

        return plan_catalog(self.settings)

    @cached_property
    def limit_store(self) -> RedisLimitStore:
        from infergate.stores.limits import RedisLimitStore

        settings = self.settings
        return RedisLimitStore(self.redis, self.route_keys, prefix=settings.redis_key_prefix,
                               clustered=self.redis_clustered)

    @cached_property
    def gatekeeper(self) -> Gatekeeper:
        from infergate.domain.admission import Gatekeeper

        return Gatekeeper(self.limit_store, fail_open=self.settings.rate_limit_fail_open,
                          lease_seconds=self.route_keys.lease_ms / 1000, telemetry=self.telemetry)

    @cached_property
    def models(self) -> ModelPolicy:
        from infergate.config import aliases
        from infergate.domain.model_policy import ModelPolicy

        settings = self.settings
        return ModelPolicy([address.server for address in self.addresses], self.catalog, default=settings.ollama_model,
                           allowed=settings.allowed_models(), aliases=aliases(settings),
                           affinity=settings.conversation_affinity)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from infergate.domain.admission import Gatekeeper
        from infergate.domain.dispatch import Dispatcher

        return Dispatcher(self.pool, queue_seconds=self.settings.queue_timeout_seconds,
                          unavailable=Gatekeeper.unavailable)

    @cached_property
    def meter(self) -> Meter:
        from infergate.domain.meter import RESERVATION_TTL, Meter

        # A reservation outlives the longest stream, so that a live request always finds it.
        ttl = max(RESERVATION_TTL, timedelta(seconds=self.settings.ollama_stream_timeout + 60))
        return Meter(self.gatekeeper, self.ledger, self.models, self.dispatcher, self.telemetry, clock=self.clock,
                     reservation_ttl=ttl, prices=self.prices, currency=self.settings.currency, alerts=self.alerts)

    @cached_property
    def prices(self) -> PriceList:
        from infergate.config import price_list

        return price_list(self.settings)

    @cached_property
    def inference(self) -> InferenceService:
        from infergate.domain.inference import InferenceService

        settings = self.settings
        return InferenceService(self.meter, self.servers, chat_seconds=settings.ollama_timeout,
                                stream_seconds=settings.ollama_stream_timeout, tokenizers=self.tokenizers)

    @cached_property
    def tokenizers(self) -> Tokenizers:
        from functools import partial

        from infergate.config import aliases, tokenizer_paths
        from infergate.domain.tokens import Tokenizers
        from infergate.llm.tokenizer import load

        settings = self.settings
        return Tokenizers({model: partial(load, path) for model, path in tokenizer_paths(settings).items()},
                          default=settings.ollama_model, aliases=aliases(settings))

    @cached_property
    def kept_responses(self) -> KeptResponses:
        from infergate.domain.kept_responses import KeptResponses
        from infergate.stores.responses import MongoKeptResponses

        return KeptResponses(MongoKeptResponses(self.database),
                             retention=timedelta(days=self.settings.responses_retention_days), clock=self.clock)

    @cached_property
    def server_reports(self) -> ServerReports:
        from infergate.domain.servers import ServerReports

        return ServerReports([address.server for address in self.addresses], self.catalog, self.pool)

    @cached_property
    def authenticator(self) -> Authenticator:
        from infergate.domain.authentication import Authenticator
        from infergate.stores.authentication import RedisFailedAuthentications

        failures = RedisFailedAuthentications(self.redis, prefix=self.settings.redis_key_prefix,
                                              per_minute=self.settings.auth_failures_per_minute)
        claimable = frozenset(filter(None, (name.strip() for name in self.settings.jwt_allowed_plans.split(","))))
        return Authenticator(self.accounts, self.plans, self.accounts_version, tokens=self.token_verifier,
                             failures=failures, claimable=claimable)

    @cached_property
    def token_verifier(self) -> TokenVerifier | None:
        """Sign-in tokens' verifier, where single sign-on is configured."""
        settings = self.settings
        if not settings.single_sign_on:
            return None
        from infergate.sso import JwtVerifier

        return JwtVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwt_jwks_url,
                           plan_claim=settings.jwt_plan_claim)

    @cached_property
    def registrar(self) -> Registrar:
        from infergate.domain.registration import Registrar

        return Registrar(self.accounts, self.gatekeeper, plan=self.plans.default,
                         per_hour=self.settings.register_limit_per_hour, clock=self.clock)

    @cached_property
    def keys(self) -> OwnKeys:
        from infergate.domain.own_keys import OwnKeys

        return OwnKeys(self.accounts, self.accounts_version, self.key_activity, clock=self.clock)

    @cached_property
    def usage(self) -> UsageReports:
        from infergate.domain.usage import UsageReports

        return UsageReports(self.ledger, self.plans, clock=self.clock, currency=self.settings.currency)

    @cached_property
    def teams(self) -> Teams:
        from infergate.domain.team_administration import Teams

        return Teams(self.accounts, self.accounts_version, self.ledger, self.plans, clock=self.clock)

    @cached_property
    def administration(self) -> Administration:
        from infergate.domain.administration import Administration

        return Administration(self.accounts, self.accounts_version, self.plans, self.key_activity, clock=self.clock)

    # -- the edge's -----------------------------------------------------------------------

    @cached_property
    def request_metrics(self) -> RequestMetrics:
        from infergate.prometheus import RequestMetrics

        return RequestMetrics(self.counters, self.limit_store)

    @cached_property
    def idempotency(self) -> Records:
        from infergate.api.idempotency import records

        return records(self.database, ttl_seconds=self.settings.idempotency_ttl_seconds)

    @cached_property
    def readiness(self) -> ReadinessCheck:
        from infergate.readiness import ReadinessCheck, probes

        dependencies = probes(lambda: self.mongo_client, lambda: self.redis, lambda: self.connections,
                              seconds=READY_SECONDS)
        return ReadinessCheck(dependencies, timeout=READY_SECONDS)


_instance = Services()


def instance() -> Services:
    """This function instance's services, its settings checked: a function whose settings are out of
    range fails its init (InvalidSettings names them), rather than every request with a 500."""
    _instance.settings  # noqa: B018 - read, and so checked, now
    return _instance


def reset() -> None:
    """A fresh start for this instance's services, as a new Lambda instance would have (tests)."""
    _instance.reset()
