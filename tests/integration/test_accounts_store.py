"""Users, keys, operators and the authenticator's memory, in a real MongoDB (secantusdb, or
TEST_MONGODB_URI) and a real Redis."""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from devkit.backends import free_port

from infergate.config import Settings, plan_catalog
from infergate.domain import keys
from infergate.domain.administration import Administration, create_admin_key
from infergate.domain.authentication import (
    REMEMBER_SECONDS,
    UNKNOWN_KEY_SECONDS,
    VERSION_CHECK_SECONDS,
    Authenticator,
    Refusal,
)
from infergate.domain.errors import Conflict, EmailAlreadyRegistered, Forbidden, InvalidRequest, NotFound
from infergate.domain.own_keys import OwnKeys
from infergate.domain.principal import Operator, Principal, principal_of
from infergate.domain.registration import register as new_account
from infergate.stores.accounts import MongoAccountStore, RedisAccountsVersion
from infergate.stores.key_activity import RedisKeyActivity
from infergate.stores.mongo import ensure_indexes
from tests.support import services
from tests.support.concurrency import at_once

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PLANS = plan_catalog(Settings.from_env({"DEFAULT_MONTHLY_TOKEN_QUOTA": "1000", "RATE_LIMIT_RPM": "5", "RATE_LIMIT_TPM": "700"}))
FREE = PLANS.default
ADMIN = Operator(key_id="adm_1", name="ops", role="admin")
VIEWER = Operator(key_id="adm_2", name="reader", role="viewer")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class CountingStore:
    """The real store, counting the reads the authenticator makes of it."""

    store: MongoAccountStore
    reads: int = 0

    def find_by_key_hash(self, key_hash):
        self.reads += 1
        return self.store.find_by_key_hash(key_hash)


@dataclass
class CountingVersion:
    version: RedisAccountsVersion
    reads: list[int | None] = field(default_factory=list)

    def read(self):
        self.reads.append(self.version.read())
        return self.reads[-1]


@pytest.fixture
def store(database) -> MongoAccountStore:
    return MongoAccountStore(database)


@pytest.fixture
def version(redis_client) -> RedisAccountsVersion:
    return RedisAccountsVersion(redis_client, prefix="infergate:")


def authenticator(store, version, clock=None, *, now=NOW) -> Authenticator:
    return Authenticator(store, PLANS, version, clock=clock or Clock(), now=lambda: now)


def register(store, email="ada@example.com"):
    return new_account(email, plan=FREE, store=store, now=NOW)


@pytest.fixture
def operators(store, version, redis_client) -> Administration:
    """What operators change, as the admin API's function changes it."""
    return Administration(store, version, PLANS, RedisKeyActivity(redis_client, prefix="infergate:"), clock=lambda: NOW)


@pytest.fixture
def own_keys(store, version, redis_client) -> OwnKeys:
    """A user's own keys, as the keys function handles them."""
    return OwnKeys(store, version, RedisKeyActivity(redis_client, prefix="infergate:"), clock=lambda: NOW)


def principal(store, version, api_key, **kwargs) -> Principal:
    found = authenticator(store, version, **kwargs).authenticate(api_key)
    assert isinstance(found, Principal), found
    return found


def test_a_registered_key_authenticates_as_its_user(store, version):
    account = register(store)
    found = principal(store, version, account.key.api_key)
    assert (found.user_id, found.key_id) == (account.user.user_id, account.key.record.key_id)
    assert (found.plan.name, found.plan.monthly_token_quota, found.plan.rate_limit_rpm, found.plan.rate_limit_tpm) == (
        "free", 1000, 5, 700)
    assert not found.suspended and found.plan.max_api_keys == 10


def test_only_the_hash_and_a_short_prefix_of_the_key_are_stored(database, store):
    account = register(store)
    stored = database.api_keys.find_one({"_id": account.key.record.key_id})
    assert stored["key_hash"] == keys.hash_key(account.key.api_key)
    assert stored["prefix"] == account.key.api_key[:8]
    everything = str(list(database.api_keys.find())) + str(list(database.users.find()))
    assert account.key.api_key not in everything


def test_unknown_malformed_and_revoked_keys_are_refused(store, version, operators):
    account = register(store)
    keyring = authenticator(store, version)
    for junk in (keys.new_api_key(), "igk_short", "", keys.new_api_key(keys.ADMIN_PREFIX)):
        assert keyring.authenticate(junk).code == "invalid_api_key"
    operators.revoke_key(ADMIN, account.key.record.key_id)
    assert authenticator(store, version).authenticate(account.key.api_key).code == "invalid_api_key"


def test_an_email_registers_once_and_leaves_no_orphan_key(database, store):
    register(store)
    with pytest.raises(EmailAlreadyRegistered):
        register(store)
    assert database.users.count_documents({}) == 1
    assert database.api_keys.count_documents({}) == 1


def test_indexes_can_be_ensured_again_and_replace_the_old_email_index(database):
    database.users.drop_indexes()
    database.users.create_index("email", unique=True, name="email_unique")
    ensure_indexes(database)
    ensure_indexes(database)
    indexes = database.users.index_information()
    assert "email_unique" not in indexes and indexes["email_unique_when_set"]["unique"]
    assert database.api_keys.index_information()["key_hash_unique"]["unique"]


# -- a user's own keys --------------------------------------------------------------

def test_a_user_holds_as_many_keys_as_the_plan_allows_even_when_asking_at_once(store, version, own_keys):
    account = register(store)
    anyone = principal_of(account.key.record.key_id, account.user, PLANS, now=NOW)
    caller = replace(anyone, plan=replace(anyone.plan, max_api_keys=4))

    def create() -> str:
        try:
            own_keys.create(caller, name="n", expires_in_days=None)
            return "created"
        except Conflict as refused:
            return refused.code

    outcomes = at_once(8, create)
    assert sorted(outcomes) == ["created"] * 3 + ["too_many_keys"] * 5  # 3 more beside the first


def test_a_key_that_expires_is_refused_with_its_own_code(store, version, own_keys):
    account = register(store)
    caller = principal(store, version, account.key.api_key)
    brief = own_keys.create(caller, name="ci", expires_in_days=1)
    assert isinstance(principal(store, version, brief.api_key), Principal)
    later = authenticator(store, version, now=NOW + timedelta(days=1, seconds=1))
    assert later.authenticate(brief.api_key).code == "api_key_expired"


def test_a_rotated_key_works_until_its_grace_ends_and_its_successor_after(store, version, own_keys):
    account = register(store)
    caller = principal(store, version, account.key.api_key)
    successor = own_keys.rotate(caller, account.key.record.key_id, grace_seconds=600)
    statuses = {key.record.key_id: key.status for key in own_keys.list(caller)}
    assert statuses == {account.key.record.key_id: "rotating", successor.record.key_id: "active"}
    during = authenticator(store, version, now=NOW + timedelta(seconds=599))
    assert isinstance(during.authenticate(account.key.api_key), Principal)
    after = authenticator(store, version, now=NOW + timedelta(seconds=600))
    assert after.authenticate(account.key.api_key).code == "api_key_expired"
    assert after.authenticate(successor.api_key).key_id == successor.record.key_id


def test_concurrent_rotations_of_one_key_give_one_successor(database, store, version, own_keys):
    account = register(store)
    caller = principal(store, version, account.key.api_key)

    def rotate() -> str:
        try:
            return own_keys.rotate(caller, account.key.record.key_id, grace_seconds=None).record.key_id
        except Conflict as refused:
            return refused.code

    outcomes = at_once(6, rotate)
    assert outcomes.count("key_not_active") == 5
    assert database.api_keys.count_documents({"user_id": account.user.user_id}) == 2


def test_grace_is_at_most_seven_days_and_keys_are_their_owners(store, version, own_keys):
    alice, bob = register(store, "alice@example.com"), register(store, "bob@example.com")
    caller = principal(store, version, alice.key.api_key)
    with pytest.raises(InvalidRequest, match="7 days"):
        own_keys.rotate(caller, alice.key.record.key_id, grace_seconds=7 * 86400 + 1)
    for operation in (
        lambda: own_keys.rotate(caller, bob.key.record.key_id, grace_seconds=None),
        lambda: own_keys.revoke(caller, bob.key.record.key_id),
    ):
        with pytest.raises(NotFound):
            operation()
    assert isinstance(principal(store, version, bob.key.api_key), Principal)


# -- operators --------------------------------------------------------------------

def test_an_operators_changes_apply_and_are_audited_with_before_and_after(store, version, operators):
    account = register(store)
    user_id = account.user.user_id
    operators.change_user(ADMIN, user_id, plan="pro", overrides={"rate_limit_rpm": 77})
    operators.grant_tokens(ADMIN, user_id, 500)
    found = principal(store, version, account.key.api_key)
    assert (found.plan.name, found.plan.rate_limit_rpm) == ("pro", 77)
    assert found.quota_for("2026-11") == PLANS.get("pro").monthly_token_quota + 500
    assert found.quota_for("2026-12") == PLANS.get("pro").monthly_token_quota
    operators.change_user(ADMIN, user_id, overrides={"rate_limit_rpm": None})
    assert principal(store, version, account.key.api_key).plan.rate_limit_rpm == PLANS.get("pro").rate_limit_rpm

    newest = store.audit_log(limit=10, before=None)
    assert [entry.action for entry in newest] == ["change_user", "grant_tokens", "change_user"]
    grant = newest[1]
    assert grant.actor == "ops (adm_1)" and grant.subject == {"type": "user", "id": user_id}
    assert (grant.before["grants"], grant.after["grants"]) == ({}, {"2026-11": 500})
    assert [entry.action for entry in store.audit_log(limit=10, before=newest[0].entry_id)] == ["grant_tokens", "change_user"]


def test_a_suspended_users_keys_say_so_and_reactivation_undoes_it(store, version, operators):
    account = register(store)
    operators.change_user(ADMIN, account.user.user_id, status="suspended")
    assert principal(store, version, account.key.api_key).suspended
    operators.change_user(ADMIN, account.user.user_id, status="active")
    assert not principal(store, version, account.key.api_key).suspended
    assert [entry.action for entry in store.audit_log(limit=5, before=None)] == ["reactivate", "suspend"]


def test_viewers_read_and_do_not_change(store, version, operators):
    account = register(store)
    for change in (
        lambda: operators.change_user(VIEWER, account.user.user_id, plan="pro"),
        lambda: operators.grant_tokens(VIEWER, account.user.user_id, 5),
        lambda: operators.revoke_key(VIEWER, account.key.record.key_id),
    ):
        with pytest.raises(Forbidden):
            change()
    assert store.audit_log(limit=5, before=None) == []


def test_bad_changes_are_refused_and_unknown_subjects_named(store, version, operators):
    account = register(store)
    for bad in ({"plan": "gold"}, {"overrides": {"colour": 1}}, {"status": "banned"}, {}):
        with pytest.raises(InvalidRequest):
            operators.change_user(ADMIN, account.user.user_id, **bad)
    with pytest.raises(NotFound):
        operators.change_user(ADMIN, "usr_missing", plan="pro")
    with pytest.raises(NotFound):
        operators.revoke_key(ADMIN, "key_missing")


def test_admin_keys_authenticate_as_operators_with_their_role(store, version):
    record, api_key = create_admin_key("ops", "viewer", store=store, now=NOW)
    operator = authenticator(store, version).authenticate(api_key)
    assert operator == Operator(key_id=record.key_id, name="ops", role="viewer") and not operator.may_change
    another = api_key[:-1] + ("y" if api_key.endswith("x") else "x")
    assert authenticator(store, version).authenticate(another).code == "invalid_api_key"


def test_an_admin_key_made_straight_in_mongodb_is_audited_too(store):
    record, _ = create_admin_key("first", "admin", store=store, now=NOW)
    [entry] = [entry for entry in store.audit_log(limit=10, before=None) if entry.subject["id"] == record.key_id]
    assert (entry.action, entry.actor) == ("create_admin_key", "make admin-key (straight in MongoDB)")
    assert entry.subject == {"type": "admin_key", "id": record.key_id} and entry.after["name"] == "first"
    assert "key_hash" not in entry.after


def test_users_are_searched_by_email_and_plan_a_page_at_a_time(store, version):
    for name in ("ann", "anna", "bob", "annie"):
        register(store, f"{name}@example.com")
    firsts = store.search_users(email="ann", plan=None, limit=2, after=None)
    rest = store.search_users(email="ann", plan=None, limit=2, after=firsts[-1].user_id)
    assert sorted(user.email for user in firsts + rest) == ["ann@example.com", "anna@example.com", "annie@example.com"]
    assert store.search_users(email="ann", plan="pro", limit=10, after=None) == []


# -- the authenticator's memory -------------------------------------------------

def test_a_key_seen_lately_is_answered_without_reading_the_database(store, version):
    account = register(store)
    counting, clock = CountingStore(store), Clock()
    keyring = authenticator(counting, version, clock)
    for _ in range(50):
        assert keyring.authenticate(account.key.api_key).key_id == account.key.record.key_id
        clock.now += 0.01
    assert counting.reads == 1


def test_the_version_is_read_at_most_once_per_check_interval(store, version):
    account = register(store)
    counting, clock = CountingVersion(version), Clock()
    keyring = authenticator(store, counting, clock)
    for _ in range(100):
        keyring.authenticate(account.key.api_key)
        clock.now += 0.01  # a second in all
    assert len(counting.reads) == pytest.approx(1 / VERSION_CHECK_SECONDS, abs=1)


def test_what_is_remembered_expires_so_hand_edits_apply_too(database, store, version):
    account = register(store)
    clock = Clock()
    keyring = authenticator(store, version, clock)
    assert keyring.authenticate(account.key.api_key).plan.name == "free"
    database.users.update_one({"_id": account.user.user_id}, {"$set": {"plan": "pro"}})  # by hand: no version change
    clock.now += REMEMBER_SECONDS - 1
    assert keyring.authenticate(account.key.api_key).plan.name == "free"
    clock.now += 2
    assert keyring.authenticate(account.key.api_key).plan.name == "pro"


def test_unknown_keys_are_remembered_briefly(store, version):
    counting, clock = CountingStore(store), Clock()
    keyring = authenticator(counting, version, clock)
    stranger = keys.new_api_key()
    for _ in range(20):
        assert isinstance(keyring.authenticate(stranger), Refusal)
    assert counting.reads == 1
    clock.now += UNKNOWN_KEY_SECONDS + 0.1
    keyring.authenticate(stranger)
    assert counting.reads == 2


def test_two_instances_honour_a_revocation_a_plan_change_and_a_suspension_within_a_check_interval(store, version, redis_url, operators):
    alice, bob, carol = (register(store, f"{name}@example.com") for name in ("alice", "bob", "carol"))
    clock = Clock()
    # Two instances: each its own memory and its own Redis connection.
    instances = [authenticator(store, RedisAccountsVersion(services.redis_client_of(redis_url), prefix="infergate:"), clock)
                 for _ in range(2)]
    for instance in instances:
        assert instance.authenticate(alice.key.api_key).plan.name == "free"
        assert instance.authenticate(bob.key.api_key).plan.name == "free"
        assert not instance.authenticate(carol.key.api_key).suspended

    operators.revoke_key(ADMIN, alice.key.record.key_id)
    operators.change_user(ADMIN, bob.user.user_id, plan="pro")
    operators.change_user(ADMIN, carol.user.user_id, status="suspended")
    clock.now += VERSION_CHECK_SECONDS
    for instance in instances:
        assert instance.authenticate(alice.key.api_key).code == "invalid_api_key"
        assert instance.authenticate(bob.key.api_key).plan.name == "pro"
        assert instance.authenticate(carol.key.api_key).suspended


def test_without_redis_nothing_is_trusted_for_longer_than_a_check_interval(store, version, operators):
    account = register(store)
    counting, clock = CountingStore(store), Clock()
    unreachable = RedisAccountsVersion(redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), prefix="infergate:")
    keyring = authenticator(counting, unreachable, clock)
    assert isinstance(keyring.authenticate(account.key.api_key), Principal)
    operators.revoke_key(ADMIN, account.key.record.key_id)
    clock.now += VERSION_CHECK_SECONDS
    assert isinstance(keyring.authenticate(account.key.api_key), Refusal)
    assert counting.reads == 2


def test_memory_is_bounded(store, version):
    account = register(store)
    counting = CountingStore(store)
    keyring = Authenticator(counting, PLANS, version, clock=Clock(), capacity=3)
    keyring.authenticate(account.key.api_key)
    for _ in range(3):
        keyring.authenticate(keys.new_api_key())
    keyring.authenticate(account.key.api_key)  # pushed out by the three strangers
    assert counting.reads == 5
