"""Users and keys in a real MongoDB (secantusdb, or TEST_MONGODB_URI)."""

from datetime import UTC, datetime

import pytest

from infergate.config import Settings
from infergate.domain import accounts, keys
from infergate.domain.plans import catalogue_from
from infergate.errors import EmailAlreadyRegistered
from infergate.stores.accounts import MongoAccountStore
from infergate.stores.mongo import ensure_indexes

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PLANS = catalogue_from(Settings.from_env({"DEFAULT_MONTHLY_TOKEN_QUOTA": "1000", "RATE_LIMIT_RPM": "5", "RATE_LIMIT_TPM": "700"}))
FREE = PLANS.default


def test_a_registered_key_authenticates_as_its_user(database):
    store = MongoAccountStore(database)
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)

    principal = accounts.authenticate(account.api_key, store=store, plans=PLANS)
    assert principal is not None
    assert (principal.user_id, principal.key_id) == (account.user_id, account.key_id)
    assert (principal.plan, principal.monthly_token_quota, principal.rate_limit_rpm, principal.rate_limit_tpm) == ("free", 1000, 5, 700)


def test_a_users_plan_is_stored_by_name_and_its_figures_come_from_the_catalogue(database):
    store = MongoAccountStore(database)
    account = accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    assert database.users.find_one({"_id": account.user_id})["plan"] == "free"
    database.users.update_one({"_id": account.user_id}, {"$set": {"plan": "pro"}})
    principal = accounts.authenticate(account.api_key, store=store, plans=PLANS)
    assert principal.plan == "pro" and principal.monthly_token_quota == PLANS.get("pro").monthly_token_quota
    database.users.update_one({"_id": account.user_id}, {"$set": {"plan": "retired"}})
    assert accounts.authenticate(account.api_key, store=store, plans=PLANS).plan == "free"


def test_only_the_hash_of_the_key_is_stored(database):
    account = accounts.register("ada@example.com", plan=FREE, store=MongoAccountStore(database), now=NOW)
    stored = database.api_keys.find_one({"_id": account.key_id})
    assert stored["key_hash"] == keys.hash_key(account.api_key)
    everything = str(list(database.api_keys.find())) + str(list(database.users.find()))
    assert account.api_key not in everything


def test_unknown_and_malformed_keys_authenticate_as_nobody(database):
    store = MongoAccountStore(database)
    accounts.register("ada@example.com", plan=FREE, store=store, now=NOW)
    assert accounts.authenticate(keys.new_api_key(), store=store, plans=PLANS) is None
    assert accounts.authenticate("igk_short", store=store, plans=PLANS) is None
    assert accounts.authenticate(None, store=store, plans=PLANS) is None


def test_an_email_registers_once_and_leaves_no_orphan_key(database):
    store = MongoAccountStore(database)
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
