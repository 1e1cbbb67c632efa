"""Users, their API keys and operators' admin keys as the account store keeps them, the
audit trail of what operators change, and the ports the store and Redis implement.

Every change to a key or a user advances the accounts version after it is made, so that
every authorizer instance, which remembers what it read, reads again within a second.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from infergate.domain import keys
from infergate.domain.ledger import Level

if TYPE_CHECKING:
    from infergate.domain.teams import Team


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    email: str | None  # None for a user of single sign-on whose token named no address
    plan: str  # a plan's name; its figures live in the plan catalog
    created_at: datetime
    status: str = "active"  # or "suspended": every key refused with 403 until reactivated
    overrides: Mapping[str, int] = field(default_factory=dict)  # plan figures set for this user alone
    grants: Mapping[str, int] = field(default_factory=dict)  # extra tokens by period (YYYY-MM)
    identity: str | None = None  # "<issuer> <subject>" for a user of single sign-on
    team_id: str | None = None  # the team they belong to, if any (at most one)
    name: str | None = None  # a service account's name: it has no email
    kind: str = "person"  # or "service": a team's service account, a principal with keys but no person


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    user_id: str
    key_hash: str
    created_at: datetime
    name: str | None = None
    prefix: str = ""  # the start of the key, to tell keys apart
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    grace_until: datetime | None = None  # set when rotated: the key works until then
    successor_id: str | None = None
    allowed_models: tuple[str, ...] | None = None  # the models (or aliases) it alone may use; None: any
    monthly_budget_micros: int | None = None  # what it alone may spend a month; None: no budget of its own
    model_quotas: tuple[tuple[str, int], ...] | None = None  # (model, tokens a month) of its own; None: none
    budget_id: str | None = None  # whose months it spends: the first key of its line (a successor shares them)

    @property
    def line(self) -> str | None:
        """Whose months the key's own limits count in, when it has any: a rotation's successor and
        the keys made with it spend the same months, so that no key buys a fresh budget or quota."""
        if self.monthly_budget_micros is None and not self.model_quotas:
            return None
        return self.budget_id or self.key_id

    def budget_level(self) -> Level | None:
        """The key's own month, when it has a budget."""
        if self.monthly_budget_micros is None:
            return None
        return Level("key", self.line, None, self.monthly_budget_micros)

    @property
    def ends_at(self) -> datetime | None:
        """When the key stops working by itself (its rotation's grace, or its expiry); None: never."""
        return self.grace_until or self.expires_at

    def outlives(self, other: ApiKeyRecord) -> bool:
        """Whether this key may work after `other` has stopped."""
        return other.ends_at is not None and (self.ends_at is None or self.ends_at > other.ends_at)

    def status(self, now: datetime) -> str:
        """active, rotating (replaced, within its grace period), expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.grace_until is not None:
            return "rotating" if now < self.grace_until else "expired"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True)
class AdminKeyRecord:
    key_id: str
    key_hash: str
    name: str
    role: str  # "admin": everything; "viewer": reads only
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Audit:
    """Who does an admin action, and what it is called; the store records its subject and
    the subject's state before and after, with the change itself."""

    actor: str
    action: str


@dataclass(frozen=True)
class AuditEntry:
    entry_id: str
    actor: str
    at: datetime
    action: str
    subject: Mapping[str, str]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True)
class AuditFilter:
    """Which entries of the audit log to read: each given part must match (None: any)."""

    actor: str | None = None  # a part of who made the change: an operator's name or admin key id
    subject: str | None = None  # the id of what changed: a user, a key, a team
    action: str | None = None  # what was done: suspend, change_key, ...


class Rotation(enum.Enum):
    ROTATED = "rotated"
    NOT_FOUND = "not_found"
    NOT_ACTIVE = "not_active"
    TOO_MANY_KEYS = "too_many_keys"  # the old key's grace and its successor would be one key too many


class AccountStore(Protocol):
    def create(self, user: UserRecord, key: ApiKeyRecord, *, audit: Audit | None = None) -> None:
        """Store both or neither (and `audit`'s entry with them); raise EmailAlreadyRegistered if the
        email is taken."""

    def find_by_key_hash(self, key_hash: str) -> tuple[ApiKeyRecord, UserRecord] | None: ...

    def find_user(self, user_id: str) -> UserRecord | None: ...

    def find_user_by_identity(self, identity: str) -> UserRecord | None: ...

    def create_identity_user(self, user: UserRecord) -> UserRecord:
        """Store a user of single sign-on, or return the one a concurrent first request stored."""

    def search_users(self, *, email: str | None, plan: str | None, limit: int, after: str | None) -> list[UserRecord]:
        """Users by id, after `after`: those whose email starts with `email`, on `plan`."""

    def keys_of(self, user_id: str) -> list[ApiKeyRecord]: ...

    def add_key(self, key: ApiKeyRecord, *, max_active: int, now: datetime) -> bool:
        """Store the key unless its user already has `max_active` working keys, active or in a
        rotation's grace period (False)."""

    def rotate_key(self, key_id: str, user_id: str, successor: ApiKeyRecord, *, grace_until: datetime,
                   now: datetime, max_working: int | None = None) -> Rotation:
        """Replace an active key of the user's by `successor`, the old one working until
        `grace_until`; at most one successor per key, whatever the concurrency; TOO_MANY_KEYS if the
        old key's grace and its successor would make more than `max_working` working keys."""

    def revoke_key(self, key_id: str, *, user_id: str | None, now: datetime,
                   audit: Audit | None = None) -> ApiKeyRecord | None:
        """Revoke a key (of `user_id`'s, when given): the key as it now stands, or None if
        there is no such key."""

    def change_user(self, user_id: str, changes: Mapping[str, Any], *, audit: Audit) -> UserRecord | None:
        """Set fields of a user (plan, status, overrides), recording the action; None if no such user."""

    def grant(self, user_id: str, period: str, tokens: int, *, audit: Audit) -> UserRecord | None:
        """Add tokens to a user's quota for `period`, recording the action; None if no such user."""

    def add_admin_key(self, key: AdminKeyRecord, *, audit: Audit) -> None: ...

    def admin_keys(self) -> list[AdminKeyRecord]:
        """Every admin key, oldest first."""

    def revoke_admin_key(self, key_id: str, *, now: datetime, audit: Audit) -> AdminKeyRecord | None:
        """The key, revoked (or as it was, if it was already); None if there is no such key."""

    def find_admin_key(self, key_hash: str) -> AdminKeyRecord | None: ...

    def find_team(self, team_id: str) -> Team | None: ...

    def teams(self, *, limit: int, after: str | None) -> list[Team]:
        """Teams by id, after `after`."""

    def create_team(self, team: Team, *, audit: Audit) -> None: ...

    def change_team(self, team_id: str, changes: Mapping[str, Any], *, audit: Audit) -> Team | None:
        """The team as changed (a None in `changes` clears that figure), or None if there is no such team."""

    def members(self, team_id: str, *, limit: int) -> list[UserRecord]: ...

    def change_key(self, key_id: str, changes: Mapping[str, Any], *, audit: Audit) -> ApiKeyRecord | None:
        """Set (None: clear) a key's budget or models, audited; None if there is no such key."""

    def audit_log(self, *, limit: int, before: str | None, only: AuditFilter = AuditFilter()) -> list[AuditEntry]:
        """The newest entries first, those older than entry `before` when given, those `only` lets through."""


class AccountsVersion(Protocol):
    """A stamp every instance can read cheaply, advanced whenever a key or a user changes,
    so that instances caching what they read from the AccountStore know when to read again."""

    def read(self) -> int | None:
        """The current stamp, or None when it cannot be read."""

    def advance(self) -> None: ...


class KeyActivity(Protocol):
    def last_used(self, user_id: str, key_ids: Sequence[str]) -> Mapping[str, datetime]:
        """When each of the user's keys was last used, for those that have been; empty if unknown."""


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits: a budget a month, tokens a month of some models; `line`: the key whose
    months they count in (None: the key's own)."""

    monthly_budget_micros: int | None = None
    model_quotas: tuple[tuple[str, int], ...] | None = None
    line: str | None = None

    def of(self, key_id: str) -> dict[str, Any]:
        """The figures of key `key_id`'s record."""
        limited = self.monthly_budget_micros is not None or bool(self.model_quotas)
        return {"monthly_budget_micros": self.monthly_budget_micros, "model_quotas": self.model_quotas or None,
                "budget_id": (self.line or key_id) if limited else None}


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: the plaintext leaves once, in the response that made it."""

    record: ApiKeyRecord
    api_key: str


def issue_key(user_id: str, *, name: str | None, now: datetime, expires_at: datetime | None = None,
              allowed_models: tuple[str, ...] | None = None, limits: KeyLimits | None = None) -> IssuedKey:
    """A new key; `limits`: its own monthly budget and per-model quotas, and whose months they count in."""
    api_key = keys.new_api_key()
    key_id = keys.new_id("key")
    record = ApiKeyRecord(key_id=key_id, user_id=user_id, key_hash=keys.hash_key(api_key), created_at=now,
                          name=name, prefix=keys.shown_prefix(api_key), expires_at=expires_at,
                          allowed_models=allowed_models, **(limits or KeyLimits()).of(key_id))
    return IssuedKey(record, api_key)
