"""Users, keys and the authenticator's memory, in a real MongoDB (secantusdb, or TEST_MONGODB_URI)
and a real Redis."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis as redis_lib
from devkit.backends import free_port

from infergate.config import Settings
from infergate.domain import accounts, keys
from infergate.domain.accounts import PRINCIPAL_SECONDS, UNKNOWN_KEY_SECONDS, VERSION_CHECK_SECONDS, Authenticator
from infergate.domain.plans import catalog_from
from infergate.errors import EmailAlreadyRegistered, InvalidRequest
from infergate.stores.accounts import MongoAccountStore, RedisAccountsVersion
from infergate.stores.mongo import ensure_indexes

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PLANS = catalog_from(Settings.from_env({"DEFAULT_MONTHLY_TOKEN_QUOTA": "1000", "RATE_LIMIT_RPM": "5", "RATE_LIMIT_TPM": "700"}))
FREE = PLANS.default


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


def authenticator(store, version, clock=None) -> Authenticator:
    return Authenticator(store, PLANS, version, clock=clock or Clock())


def test_a_registered_key_authenticates_as_its_user(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    principal = authenticator(store, version).authenticate(account.api_key)
    assert principal is not None
    assert (principal.user_id, principal.key_id) == (account.user.user_id, account.key_id)
    assert (principal.plan, principal.monthly_token_quota, principal.rate_limit_rpm, principal.rate_limit_tpm) == ("free", 1000, 5, 700)


def test_a_users_plan_is_stored_by_name_and_its_figures_come_from_the_catalog(database, store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    assert database.users.find_one({"_id": account.user.user_id})["plan"] == "free"
    assert accounts.change_plan(account.user.user_id, "pro", store=store, version=version, plans=PLANS)
    principal = authenticator(store, version).authenticate(account.api_key)
    assert principal.plan == "pro" and principal.monthly_token_quota == PLANS.get("pro").monthly_token_quota
    database.users.update_one({"_id": account.user.user_id}, {"$set": {"plan": "retired"}})
    assert authenticator(store, version).authenticate(account.api_key).plan == "free"
    with pytest.raises(InvalidRequest):
        accounts.change_plan(account.user.user_id, "gold", store=store, version=version, plans=PLANS)


def test_only_the_hash_of_the_key_is_stored(database, store):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    stored = database.api_keys.find_one({"_id": account.key_id})
    assert stored["key_hash"] == keys.hash_key(account.api_key)
    everything = str(list(database.api_keys.find())) + str(list(database.users.find()))
    assert account.api_key not in everything


def test_unknown_malformed_and_revoked_keys_authenticate_as_nobody(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    keyring = authenticator(store, version)
    assert keyring.authenticate(keys.new_api_key()) is None
    assert keyring.authenticate("igk_short") is None
    assert keyring.authenticate(None) is None
    assert accounts.revoke_key(account.key_id, store=store, version=version)
    assert authenticator(store, version).authenticate(account.api_key) is None
    assert not accounts.revoke_key("key_missing", store=store, version=version)


def test_an_email_registers_once_and_leaves_no_orphan_key(database, store):
    accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    with pytest.raises(EmailAlreadyRegistered):
        accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    assert database.users.count_documents({}) == 1
    assert database.api_keys.count_documents({}) == 1


def test_indexes_can_be_ensured_again(database):
    ensure_indexes(database)
    ensure_indexes(database)
    assert database.users.index_information()["email_unique"]["unique"]
    assert database.api_keys.index_information()["key_hash_unique"]["unique"]


# -- the authenticator's memory -------------------------------------------------

def test_a_key_seen_lately_is_answered_without_reading_the_database(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    counting, clock = CountingStore(store), Clock()
    keyring = authenticator(counting, version, clock)
    for _ in range(50):
        assert keyring.authenticate(account.api_key).key_id == account.key_id
        clock.now += 0.01
    assert counting.reads == 1


def test_the_version_is_read_at_most_once_per_check_interval(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    counting, clock = CountingVersion(version), Clock()
    keyring = authenticator(store, counting, clock)
    for _ in range(100):
        keyring.authenticate(account.api_key)
        clock.now += 0.01  # a second in all
    assert len(counting.reads) == pytest.approx(1 / VERSION_CHECK_SECONDS, abs=1)


def test_what_is_remembered_expires_so_hand_edits_apply_too(database, store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    clock = Clock()
    keyring = authenticator(store, version, clock)
    assert keyring.authenticate(account.api_key).plan == "free"
    database.users.update_one({"_id": account.user.user_id}, {"$set": {"plan": "pro"}})  # by hand: no version change
    clock.now += PRINCIPAL_SECONDS - 1
    assert keyring.authenticate(account.api_key).plan == "free"
    clock.now += 2
    assert keyring.authenticate(account.api_key).plan == "pro"


def test_unknown_keys_are_remembered_briefly(store, version):
    counting, clock = CountingStore(store), Clock()
    keyring = authenticator(counting, version, clock)
    stranger = keys.new_api_key()
    for _ in range(20):
        assert keyring.authenticate(stranger) is None
    assert counting.reads == 1
    clock.now += UNKNOWN_KEY_SECONDS + 0.1
    keyring.authenticate(stranger)
    assert counting.reads == 2


def test_two_instances_honour_a_revocation_and_a_plan_change_within_a_check_interval(store, version, redis_url):
    alice = accounts.register("alice@example.com", plan=FREE, store=store, now=NOW)
    bob = accounts.register("bob@example.com", plan=FREE, store=store, now=NOW)
    clock = Clock()
    # Two instances: each its own memory and its own Redis connection.
    instances = [authenticator(store, RedisAccountsVersion(redis_lib.Redis.from_url(redis_url), prefix="infergate:"), clock)
                 for _ in range(2)]
    for instance in instances:
        assert instance.authenticate(alice.api_key) and instance.authenticate(bob.api_key).plan == "free"

    accounts.revoke_key(alice.key_id, store=store, version=version)
    accounts.change_plan(bob.user.user_id, "pro", store=store, version=version, plans=PLANS)
    clock.now += VERSION_CHECK_SECONDS
    for instance in instances:
        assert instance.authenticate(alice.api_key) is None
        assert instance.authenticate(bob.api_key).plan == "pro"


def test_without_redis_nothing_is_trusted_for_longer_than_a_check_interval(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    counting, clock = CountingStore(store), Clock()
    unreachable = RedisAccountsVersion(redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), prefix="infergate:")
    keyring = authenticator(counting, unreachable, clock)
    assert keyring.authenticate(account.api_key)
    accounts.revoke_key(account.key_id, store=store, version=version)
    clock.now += VERSION_CHECK_SECONDS
    assert keyring.authenticate(account.api_key) is None
    assert counting.reads == 2


def test_memory_is_bounded(store, version):
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    counting = CountingStore(store)
    keyring = Authenticator(counting, PLANS, version, clock=Clock(), capacity=3)
    keyring.authenticate(account.api_key)
    for _ in range(3):
        keyring.authenticate(keys.new_api_key())
    keyring.authenticate(account.api_key)  # pushed out by the three strangers
    assert counting.reads == 5
