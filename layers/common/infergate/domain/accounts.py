"""Registering users, recognising their API keys, and changing keys and plans."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from infergate.domain import keys
from infergate.domain.plans import Plan, PlanCatalog
from infergate.domain.ports import AccountStore, AccountsVersion, ApiKeyRecord, UserRecord
from infergate.domain.principal import Principal
from infergate.errors import InvalidRequest
from infergate.observability import logger

# How long an instance keeps what it read: a key's principal, and the fact that a key is unknown.
PRINCIPAL_SECONDS = 60.0
UNKNOWN_KEY_SECONDS = 5.0
# How often an instance reads the accounts version. A change (a revoked key, a new plan)
# reaches every instance within this, so well within a second.
VERSION_CHECK_SECONDS = 0.5
CACHED_KEYS = 4096


@dataclass(frozen=True)
class Registration:
    user: UserRecord
    key_id: str
    api_key: str  # the plaintext key: it leaves once, in the response to the registration
    plan: Plan


def register(email: str, *, plan: Plan, store: AccountStore, now: datetime) -> Registration:
    """Create a user and their first API key."""
    user = UserRecord(user_id=keys.new_id("usr"), email=email, plan=plan.name, created_at=now)
    api_key = keys.new_api_key()
    key = ApiKeyRecord(key_id=keys.new_id("key"), user_id=user.user_id, key_hash=keys.hash_key(api_key), created_at=now)
    store.create(user, key)
    return Registration(user=user, key_id=key.key_id, api_key=api_key, plan=plan)


def principal_of(key: ApiKeyRecord, user: UserRecord, plans: PlanCatalog) -> Principal | None:
    """What a stored key lets its holder do, or None for a key that no longer works."""
    if key.status != "active":
        return None
    plan = plans.get(user.plan)
    if plan is None:
        logger.warning("user's plan is not defined; applying the default plan", extra={"plan": user.plan})
        plan = plans.default
    return Principal(
        user_id=user.user_id,
        key_id=key.key_id,
        plan=plan.name,
        monthly_token_quota=plan.monthly_token_quota,
        rate_limit_rpm=plan.rate_limit_rpm,
        rate_limit_tpm=plan.rate_limit_tpm,
        max_output_tokens=plan.max_output_tokens,
    )


@dataclass(frozen=True)
class _Remembered:
    principal: Principal | None
    until: float


class Authenticator:
    """Recognises API keys, remembering for a while what the store said of each.

    The warm path reads nothing: a key seen lately is answered from memory
    (a known key for PRINCIPAL_SECONDS, an unknown one for UNKNOWN_KEY_SECONDS).
    Every change to a key or a user advances the accounts version; the
    authenticator reads it at most every VERSION_CHECK_SECONDS and forgets
    everything when it has moved, or when it cannot be read.
    """

    def __init__(self, store: AccountStore, plans: PlanCatalog, version: AccountsVersion, *,
                 clock: Callable[[], float] = time.monotonic, capacity: int = CACHED_KEYS) -> None:
        self._store, self._plans, self._version = store, plans, version
        self._clock = clock
        self._capacity = capacity
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()
        self._seen_version: int | None = None
        self._next_check = float("-inf")
        self._lock = threading.Lock()

    def authenticate(self, api_key: str | None) -> Principal | None:
        """The principal an API key belongs to, or None for a missing, malformed, unknown or revoked key."""
        if not api_key or not keys.is_well_formed(api_key):
            return None
        key_hash = keys.hash_key(api_key)
        now = self._clock()
        with self._lock:
            self._forget_if_changed(now)
            remembered = self._remembered.get(key_hash)
            if remembered is not None and now < remembered.until:
                self._remembered.move_to_end(key_hash)
                return remembered.principal
        principal = self._read(key_hash)
        with self._lock:
            self._remember(key_hash, principal, now)
        return principal

    def _read(self, key_hash: str) -> Principal | None:
        found = self._store.find_by_key_hash(key_hash)
        return principal_of(*found, self._plans) if found else None

    def _forget_if_changed(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + VERSION_CHECK_SECONDS
        version = self._version.read()
        if version is None or version != self._seen_version:
            self._remembered.clear()
        self._seen_version = version

    def _remember(self, key_hash: str, principal: Principal | None, now: float) -> None:
        lifetime = PRINCIPAL_SECONDS if principal is not None else UNKNOWN_KEY_SECONDS
        self._remembered[key_hash] = _Remembered(principal, now + lifetime)
        self._remembered.move_to_end(key_hash)
        while len(self._remembered) > self._capacity:
            self._remembered.popitem(last=False)


def revoke_key(key_id: str, *, store: AccountStore, version: AccountsVersion) -> bool:
    """Refuse the key from now on, on every instance. False if there is no such key."""
    return _changed(store.set_key_status(key_id, "revoked"), version)


def delete_key(key_id: str, *, store: AccountStore, version: AccountsVersion) -> bool:
    return _changed(store.delete_key(key_id), version)


def change_plan(user_id: str, plan: str, *, store: AccountStore, version: AccountsVersion, plans: PlanCatalog) -> bool:
    """Move a user to `plan`; its figures apply to their next request on every instance."""
    if plans.get(plan) is None:
        raise InvalidRequest(f"There is no plan '{plan}' (plans: {', '.join(plans.names())}).")
    return _changed(store.set_plan(user_id, plan), version)


def _changed(found: bool, version: AccountsVersion) -> bool:
    # After the change, never before: an instance that read the old state meanwhile
    # sees the version move on its next check and reads again.
    if found:
        version.advance()
    return found
