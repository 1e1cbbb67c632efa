"""A user's own API keys: create, list, rotate (the old key working for a grace period) and
revoke. Every revocation and rotation advances the accounts version, so that every authorizer
instance applies it within a second.

What a key may do to keys: keys in their grace period count against the plan's max_api_keys
(a rotation that would pass it is refused, unless its grace is none); and a key that stops
working by itself (one that expires, or is in its rotation's grace period) cannot create a key
that outlives it, nor revoke or rotate one that does, its own successor included. So a key
that leaked cannot be turned into one that lasts."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from infergate.domain.accounts import (
    AccountStore,
    AccountsVersion,
    ApiKeyRecord,
    IssuedKey,
    KeyActivity,
    KeyLimits,
    Rotation,
    issue_key,
)
from infergate.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from infergate.domain.principal import Principal, allowed_by_all

DEFAULT_GRACE = timedelta(hours=24)
LONGEST_GRACE = timedelta(days=7)
_KEY_ID = re.compile(r"^key_[0-9a-f]{24}$")


@dataclass(frozen=True)
class KeyState:
    """A key as it stands at one moment: active, rotating, expired or revoked, and when it was last used."""

    record: ApiKeyRecord
    status: str
    last_used_at: datetime | None


class OwnKeys:
    def __init__(self, store: AccountStore, version: AccountsVersion, activity: KeyActivity, *,
                 clock: Callable[[], datetime]) -> None:
        self._store, self._version, self._activity, self._clock = store, version, activity, clock

    def create(self, principal: Principal, *, name: str | None, expires_in_days: int | None,
               allowed_models: list[str] | None = None, monthly_budget_micros: int | None = None,
               model_quotas: dict[str, int] | None = None) -> IssuedKey:
        """A new key; with `allowed_models`, one that may use only those; with `monthly_budget_micros`
        or `model_quotas`, one with a budget or per-model quotas of its own. A key made with a key that
        may use only some models may use no more than it; one made with a key that has limits of its
        own spends that key's months."""
        now = self._clock()
        expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
        models = allowed_by_all(allowed_models, principal.allowed_models)
        if allowed_models is not None and models != allowed_by_all(allowed_models):
            raise Forbidden("allowed_models names a model the key making it may not use: a key may allow no more "
                            f"than {', '.join(sorted(principal.allowed_models or ()))}.", param="allowed_models")
        issued = issue_key(principal.user_id, name=name, now=now, expires_at=expires_at,
                           allowed_models=None if models is None else tuple(sorted(models)),
                           limits=_limits_of_new_key(principal, monthly_budget_micros, model_quotas))
        caller = self._caller(principal)
        if caller is not None and issued.record.outlives(caller):
            raise Forbidden(f"This key stops working at {caller.ends_at.isoformat()}; it cannot create a key that "
                            "outlives it (send expires_in_days within its remaining life, or use a lasting key).")
        most = principal.plan.max_api_keys
        if not self._store.add_key(issued.record, max_active=most, now=now):
            raise Conflict(f"Your plan allows {most} working keys, those in a rotation's grace period included; "
                           "revoke one first.", code="too_many_keys")
        return issued

    def list(self, principal: Principal) -> list[KeyState]:
        """The user's keys, oldest first."""
        return states(self._store.keys_of(principal.user_id), activity=self._activity, now=self._clock())

    def rotate(self, principal: Principal, key_id: str, *, grace_seconds: int | None) -> IssuedKey:
        """A new key in place of `key_id`, which keeps working for the grace period."""
        _known(key_id)
        grace = DEFAULT_GRACE if grace_seconds is None else timedelta(seconds=grace_seconds)
        if grace > LONGEST_GRACE:
            raise InvalidRequest(f"grace_seconds may be at most {int(LONGEST_GRACE.total_seconds())} (7 days).")
        keys = self._store.keys_of(principal.user_id)
        old = next((key for key in keys if key.key_id == key_id), None)
        if old is None:
            raise _no_key(key_id)
        self._may_change(principal, old, keys, "rotate")
        now = self._clock()
        successor = issue_key(principal.user_id, name=old.name, now=now, expires_at=old.expires_at,
                              allowed_models=old.allowed_models,
                              limits=KeyLimits(old.monthly_budget_micros, old.model_quotas, old.line))
        outcome = self._store.rotate_key(key_id, principal.user_id, successor.record, grace_until=now + grace, now=now,
                                         max_working=principal.plan.max_api_keys)
        if outcome is Rotation.NOT_FOUND:
            raise _no_key(key_id)
        if outcome is Rotation.TOO_MANY_KEYS:
            raise Conflict(f"Your plan allows {principal.plan.max_api_keys} working keys, those in a rotation's "
                           "grace period included; revoke one, or rotate with grace_seconds 0.", code="too_many_keys")
        if outcome is Rotation.NOT_ACTIVE:
            raise Conflict(f"Key {key_id} is not active (it was rotated, revoked or has expired); rotate an active "
                           "key.", code="key_not_active")
        self._version.advance()
        return successor

    def revoke(self, principal: Principal, key_id: str) -> KeyState:
        now, key_id = self._clock(), _known(key_id)
        keys = self._store.keys_of(principal.user_id)
        target = next((key for key in keys if key.key_id == key_id), None)
        if target is not None:
            self._may_change(principal, target, keys, "revoke")
        revoked = self._store.revoke_key(key_id, user_id=principal.user_id, now=now)
        if revoked is None:
            raise _no_key(key_id)
        self._version.advance()
        return states([revoked], activity=self._activity, now=now)[0]

    def _caller(self, principal: Principal, keys: list[ApiKeyRecord] | None = None) -> ApiKeyRecord | None:
        """The key the request came with (None for a sign-in, which has no key)."""
        keys = self._store.keys_of(principal.user_id) if keys is None else keys
        return next((key for key in keys if key.key_id == principal.key_id), None)

    def _may_change(self, principal: Principal, target: ApiKeyRecord, keys: list[ApiKeyRecord], action: str) -> None:
        """Forbidden if the calling key would change a key that outlives it (itself it always may)."""
        caller = self._caller(principal, keys)
        if caller is not None and target.key_id != caller.key_id and target.outlives(caller):
            raise Forbidden(f"This key stops working at {caller.ends_at.isoformat()}; it cannot {action} "
                            f"{target.key_id}, which outlives it. Use a lasting key.")


def states(records: list[ApiKeyRecord], *, activity: KeyActivity, now: datetime) -> list[KeyState]:
    """Keys as they stand at `now`, oldest first, with when each was last used."""
    ordered = sorted(records, key=lambda key: key.created_at)
    last_used = activity.last_used(ordered[0].user_id, [key.key_id for key in ordered]) if ordered else {}
    return [KeyState(key, key.status(now), last_used.get(key.key_id)) for key in ordered]


def _limits_of_new_key(principal: Principal, budget: int | None, quotas: dict[str, int] | None) -> KeyLimits:
    """A new key's budget and per-model quotas, and whose months they count in: its own, or, made
    with a key that has limits of its own, that key's (so that a key cannot make itself fresh ones)."""
    asked = tuple(sorted(quotas.items())) if quotas else None
    if principal.key_line is None:
        return KeyLimits(budget, asked)
    for name, value in (("monthly_budget_micros", budget), ("model_quotas", quotas)):
        if value is not None:
            raise Forbidden("A key with a budget or per-model quotas of its own cannot make a key with other limits: "
                            "a key made with it spends its months.", param=name)
    maker_budget = principal.key_budget
    return KeyLimits(None if maker_budget is None else maker_budget.budget_micros,
                     tuple(sorted(principal.key_model_quotas)) or None, principal.key_line)


def _known(key_id: str) -> str:
    """`key_id`, if it has a key id's form; NotFound without a lookup if it has not."""
    if not _KEY_ID.match(key_id):
        raise NotFound("There is no such key.", code="key_not_found")
    return key_id


def _no_key(key_id: str) -> NotFound:
    return NotFound(f"You have no key {key_id}.", code="key_not_found")
