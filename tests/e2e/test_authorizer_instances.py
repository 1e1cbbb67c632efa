"""Two instances of the authorizer, each a worker process of its own running the real handler
on real API Gateway events, in front of a counting proxy to MongoDB: a key they have seen costs
no database read, and a revoked key or a changed plan is honoured by both within a second."""

from __future__ import annotations

import itertools
import sys
import uuid
from datetime import UTC, datetime

import pytest
from devkit import template
from devkit.functions import WorkerInstance

from infergate.config import Settings, plan_catalog
from infergate.domain import keys
from infergate.domain.administration import Administration
from infergate.domain.principal import Operator
from infergate.domain.registration import Registration
from infergate.domain.registration import register as new_account
from infergate.stores.accounts import MongoAccountStore, RedisAccountsVersion
from infergate.stores.key_activity import RedisKeyActivity
from tests.support import services
from tests.support.lambda_events import authorizer_event
from tests.support.paths import ROOT
from tests.support.spreading import answers_asked_after

sys.path.insert(0, str(ROOT / "bench"))
from wiretap import Wiretap, mongo_commands  # noqa: E402

PLANS = plan_catalog(Settings())
OPERATOR = Operator(key_id="adm_test", name="test", role="admin")
# What the two instances promise: a change is honoured within this.
WITHIN_SECONDS = 1.0


@pytest.fixture
def database(mongo_client):
    name = f"authorizers_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


@pytest.fixture
def wiretap(mongo_uri) -> Wiretap:
    host, port = mongo_uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return Wiretap((host, int(port)), mongo_commands)


@pytest.fixture
def authorizers(database, wiretap, redis_url, redis_client):
    spec = template.load(ROOT / "template.yaml").functions["AuthorizerFunction"]
    environment = {**spec.environment, "MONGODB_URI": f"mongodb://127.0.0.1:{wiretap.port}/?directConnection=true",
                   "MONGODB_DB": database.name, "REDIS_URL": redis_url, "POWERTOOLS_TRACE_DISABLED": "true",
                   "REDIS_CLUSTER": str(services.redis_is_cluster()).lower(),
                   # A revoked key is refused over and over here: the failed-authentication limit is another test's.
                   "AUTH_FAILURES_PER_MINUTE": "1000000"}
    instances = [WorkerInstance(spec, environment) for _ in range(2)]
    yield instances
    for instance in instances:
        instance.kill()


@pytest.fixture
def store(database) -> MongoAccountStore:
    return MongoAccountStore(database)


def register(store: MongoAccountStore, email: str) -> Registration:
    return new_account(email, plan=PLANS.default, store=store, now=datetime.now(UTC))


def decide(instance: WorkerInstance, key: str) -> dict:
    policy = instance.invoke(authorizer_event("POST", "/v1/chat", headers={"x-api-key": key}), timeout=30)
    return {"effect": policy["policyDocument"]["Statement"][0]["Effect"], **policy.get("context", {})}


def key_reads(wiretap: Wiretap) -> int:
    return wiretap.snapshot()["aggregate"]


def test_a_key_seen_lately_costs_no_database_read(authorizers, store, wiretap):
    account = register(store, "ada@example.com")
    stranger = keys.new_api_key()
    for instance in authorizers:
        assert decide(instance, account.key.api_key)["effect"] == "Allow"
        assert decide(instance, stranger)["effect"] == "Deny"
    assert key_reads(wiretap) == 4  # each instance read each key once
    for _ in range(20):
        for instance in authorizers:
            assert decide(instance, account.key.api_key)["effect"] == "Allow"
            assert decide(instance, stranger)["errorCode"] == "invalid_api_key"
    assert key_reads(wiretap) == 4


def test_a_revocation_a_plan_change_and_a_suspension_are_honoured_by_both_within_a_second(authorizers, store, redis_client):
    alice, bob, carol = (register(store, f"{name}@example.com") for name in ("alice", "bob", "carol"))
    for instance in authorizers:
        assert decide(instance, alice.key.api_key)["effect"] == "Allow"
        assert decide(instance, bob.key.api_key)["plan"] == "free"
        assert decide(instance, carol.key.api_key)["suspended"] is False

    version = RedisAccountsVersion(redis_client, prefix=Settings().redis_key_prefix)
    operators = Administration(store, version, PLANS, RedisKeyActivity(redis_client, prefix="infergate:"),
                               clock=lambda: datetime.now(UTC))
    operators.revoke_key(OPERATOR, alice.key.record.key_id)
    operators.change_user(OPERATOR, bob.user.user_id, plan="pro")
    operators.change_user(OPERATOR, carol.user.user_id, status="suspended")
    turns = itertools.cycle(authorizers)

    def ask() -> tuple[dict, dict, dict]:
        instance = next(turns)
        return (decide(instance, alice.key.api_key), decide(instance, bob.key.api_key),
                decide(instance, carol.key.api_key))

    later = answers_asked_after(WITHIN_SECONDS, ask, at_least=2 * len(authorizers))
    assert len(later) >= 2
    for refused, upgraded, suspended in later:
        assert (refused["effect"], refused["errorCode"]) == ("Deny", "invalid_api_key")
        assert (upgraded["effect"], upgraded["plan"]) == ("Allow", "pro")
        assert int(upgraded["rate_limit_rpm"]) == PLANS.get("pro").rate_limit_rpm
        assert suspended["suspended"] is True  # the functions answer such a caller 403 account_suspended
