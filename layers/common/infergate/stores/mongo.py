"""MongoDB clients as InferGate configures them (bootstrap makes one per function instance),
and the indexes InferGate relies on.

Registration writes a user and their key in one multi-document transaction,
so MongoDB must be a replica set (Atlas, or a single-node replica set for
development). Accounting uses single-document updates only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import pymongo
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from infergate.domain.errors import ServiceUnavailable
from infergate.tracing import span

USERS = "users"
API_KEYS = "api_keys"
ADMIN_KEYS = "admin_keys"
AUDIT_LOG = "audit_log"
TEAMS = "teams"
ALERTS = "alerts"
USAGE = "usage"
REQUEST_LOG = "request_log"
RESPONSES = "responses"
IDEMPOTENCY = "idempotency"

# The most any one store call may take, retries and transactions included: a MongoDB that
# is down or hung costs a request this, then 503, never the function's own timeout.
CALL_SECONDS = 3.0


def connect(uri: str, **options) -> MongoClient:
    """A client configured as InferGate needs it (tests and benchmarks use it too); `options`
    override the defaults."""
    defaults = {
        "appname": "infergate",
        "tz_aware": True,
        "serverSelectionTimeoutMS": 3000,
        "connectTimeoutMS": 3000,
        # Each store call is bounded as a whole (unavailable_when_unreachable); this bounds
        # any other use of the client.
        "socketTimeoutMS": 5_000,
        # Lambda freezes idle instances; short pools avoid reusing sockets the server dropped.
        "maxIdleTimeMS": 60_000,
        # An instance serves one request at a time, and a request asks one thing at a time: a pool
        # of one is all it uses. The driver's monitor polls (one more socket) rather than streaming
        # (two more), as MongoDB advises for functions. So 1,000 instances hold 2,000 sockets, not
        # 3,000, within an M10's 1,500 only below 750 instances (docs/operating/scaling.md: MongoDB at scale).
        "maxPoolSize": 1,
        "serverMonitoringMode": "poll",
        # Every write InferGate makes is safe to repeat, and the ledger repeats its own
        # (see stores/usage.py): the server's retryable-write bookkeeping is not needed.
        "retryWrites": False,
    }
    return MongoClient(uri, **{**defaults, **options})


def database_of(client: MongoClient, name: str) -> Database:
    """The database `name`, with the indexes InferGate relies on (made if they are missing)."""
    database = client[name]
    unavailable_when_unreachable(ensure_indexes)(database)
    return database


def ensure_indexes(database: Database) -> None:
    """Create the indexes if they are missing; a no-op when they exist."""
    # Unique where set: a user of single sign-on may have no address.
    database[USERS].create_index([("email", ASCENDING)], unique=True, name="email_unique_when_set",
                                 partialFilterExpression={"email": {"$type": "string"}})
    if "email_unique" in database[USERS].index_information():
        database[USERS].drop_index("email_unique")  # its predecessor, unique even where unset
    database[USERS].create_index([("identity", ASCENDING)], unique=True, name="identity_unique_when_set",
                                 partialFilterExpression={"identity": {"$type": "string"}})
    database[USERS].create_index([("plan", ASCENDING)], name="plan")
    database[USERS].create_index([("team_id", ASCENDING)], name="team_id",
                                 partialFilterExpression={"team_id": {"$type": "string"}})
    database[API_KEYS].create_index([("key_hash", ASCENDING)], unique=True, name="key_hash_unique")
    database[ADMIN_KEYS].create_index([("key_hash", ASCENDING)], unique=True, name="key_hash_unique")
    database[API_KEYS].create_index([("user_id", ASCENDING)], name="user_id")
    database[REQUEST_LOG].create_index([("user_id", ASCENDING), ("period", ASCENDING), ("seq", ASCENDING)],
                                       name="user_period_seq")
    # Kept responses go when their retention ends (stores/responses.py).
    database[RESPONSES].create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")
    # So do Idempotency-Key records (stores/idempotency_store.py).
    database[IDEMPOTENCY].create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")


def set_or_unset(changes: Mapping[str, Any], stored: Callable[[Any], Any] = lambda value: value) -> dict:
    """An update that sets each of `changes` (as `stored` keeps it) and unsets those that are None."""
    update: dict[str, dict] = {}
    for name, value in changes.items():
        update.setdefault("$unset" if value is None else "$set", {})[name] = "" if value is None else stored(value)
    return update


def stored(value: Any) -> Any:
    """A figure as a document keeps it: a model's name may hold dots, so per-model quotas are a
    list of pairs, not a map."""
    if isinstance(value, dict):
        return [{"model": model, "tokens": tokens} for model, tokens in sorted(value.items())]
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return [{"model": model, "tokens": tokens} for model, tokens in value]
    return list(value) if isinstance(value, tuple) else value


def quotas_of(document: Mapping[str, Any]) -> tuple[tuple[str, int], ...] | None:
    """A document's per-model quotas, as `stored` keeps them."""
    quotas = document.get("model_quotas")
    return None if quotas is None else tuple((quota["model"], quota["tokens"]) for quota in quotas)


P = ParamSpec("P")
R = TypeVar("R")


def unavailable_when_unreachable(method: Callable[P, R]) -> Callable[P, R]:
    """Bounds a store call to CALL_SECONDS in all (pymongo's client-side operation timeout,
    which also ends a transaction's retries), and reports a MongoDB that cannot be reached
    in time as 503 service_unavailable, not as a crash or a hang."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with span("MongoDB", operation=method.__qualname__), pymongo.timeout(CALL_SECONDS):
                return method(*args, **kwargs)
        except ConnectionFailure as error:
            raise ServiceUnavailable("The database cannot be reached; retry shortly.", retry_after=1) from error
        except PyMongoError as error:
            if error.timeout:
                raise ServiceUnavailable("The database did not answer in time; retry shortly.", retry_after=1) from error
            if error.has_error_label("TransientTransactionError") or error.has_error_label("RetryableWriteError"):
                raise ServiceUnavailable("The database is busy; retry shortly.", retry_after=1) from error
            raise

    return wrapper
