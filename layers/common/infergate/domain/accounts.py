"""Users and their keys: registering, what a key lets its holder do, a user's own keys
(create, list, rotate, revoke), and what operators change (plans, overrides, suspension,
grants, revocations).

Every change to a key or a user advances the accounts version after it is made, so that
every authorizer instance, which remembers what it read, reads again within a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from infergate.domain import keys
from infergate.domain.periods import period_of
from infergate.domain.plans import FIGURES, Plan, PlanCatalog
from infergate.domain.ports import (
    AccountStore,
    AccountsVersion,
    AdminKeyRecord,
    ApiKeyRecord,
    Audit,
    Claims,
    Rotation,
    UserRecord,
)
from infergate.domain.principal import Operator, Principal
from infergate.errors import Conflict, Forbidden, InvalidRequest, NotFound
from infergate.observability import logger

DEFAULT_GRACE = timedelta(hours=24)
LONGEST_GRACE = timedelta(days=7)
LONGEST_EXPIRY_DAYS = 3650
ROLES = ("admin", "viewer")


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: the plaintext leaves once, in the response that made it."""

    record: ApiKeyRecord
    api_key: str


@dataclass(frozen=True)
class Registration:
    user: UserRecord
    key: IssuedKey
    plan: Plan


def register(email: str, *, plan: Plan, store: AccountStore, now: datetime) -> Registration:
    """Create a user and their first API key."""
    user = UserRecord(user_id=keys.new_id("usr"), email=email, plan=plan.name, created_at=now)
    issued = _issue(user.user_id, name="default", now=now)
    store.create(user, issued.record)
    return Registration(user=user, key=issued, plan=plan)


def _issue(user_id: str, *, name: str | None, now: datetime, expires_at: datetime | None = None) -> IssuedKey:
    api_key = keys.new_api_key()
    record = ApiKeyRecord(key_id=keys.new_id("key"), user_id=user_id, key_hash=keys.hash_key(api_key), created_at=now,
                          name=name, prefix=keys.shown_prefix(api_key), expires_at=expires_at)
    return IssuedKey(record, api_key)


def plan_of(user: UserRecord, plans: PlanCatalog) -> Plan:
    """The user's plan, with the figures an operator set for them alone."""
    plan = plans.get(user.plan)
    if plan is None:
        logger.warning("user's plan is not defined; applying the default plan", extra={"plan": user.plan})
        plan = plans.default
    return plan.model_copy(update=dict(user.overrides)) if user.overrides else plan


def principal_of(key_id: str, user: UserRecord, plans: PlanCatalog, *, now: datetime) -> Principal:
    """The user of `key_id` (an API key's id, or their sign-in's) and what their plan allows now."""
    plan = plan_of(user, plans)
    period = period_of(now)
    return Principal(
        user_id=user.user_id,
        key_id=key_id,
        plan=plan.name,
        monthly_token_quota=plan.monthly_token_quota,
        rate_limit_rpm=plan.rate_limit_rpm,
        rate_limit_tpm=plan.rate_limit_tpm,
        max_output_tokens=plan.max_output_tokens,
        max_api_keys=plan.max_api_keys,
        max_concurrent_requests=plan.max_concurrent_requests,
        suspended=user.status == "suspended",
        granted_tokens=user.grants.get(period, 0),
        granted_period=period,
    )


# -- a user's own keys ------------------------------------------------------------

def create_key(principal: Principal, *, name: str | None, expires_in_days: int | None, store: AccountStore,
               now: datetime) -> IssuedKey:
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    issued = _issue(principal.user_id, name=name, now=now, expires_at=expires_at)
    if not store.add_key(issued.record, max_active=principal.max_api_keys, now=now):
        raise Conflict(f"Your plan allows {principal.max_api_keys} active keys; revoke one first.", code="too_many_keys")
    return issued


def keys_of(user_id: str, *, store: AccountStore) -> list[ApiKeyRecord]:
    """A user's keys, oldest first."""
    return sorted(store.keys_of(user_id), key=lambda key: key.created_at)


def rotate_key(principal: Principal, key_id: str, *, grace_seconds: int | None, store: AccountStore,
               version: AccountsVersion, now: datetime) -> IssuedKey:
    """A new key in place of `key_id`, which keeps working for the grace period."""
    grace = DEFAULT_GRACE if grace_seconds is None else timedelta(seconds=grace_seconds)
    if grace > LONGEST_GRACE:
        raise InvalidRequest(f"grace_seconds may be at most {int(LONGEST_GRACE.total_seconds())} (7 days).")
    old = next((key for key in store.keys_of(principal.user_id) if key.key_id == key_id), None)
    if old is None:
        raise NotFound(f"You have no key {key_id}.", code="key_not_found")
    successor = _issue(principal.user_id, name=old.name, now=now, expires_at=old.expires_at)
    outcome = store.rotate_key(key_id, principal.user_id, successor.record, grace_until=now + grace, now=now)
    if outcome is Rotation.NOT_FOUND:
        raise NotFound(f"You have no key {key_id}.", code="key_not_found")
    if outcome is Rotation.NOT_ACTIVE:
        raise Conflict(f"Key {key_id} is not active (it was rotated, revoked or has expired); rotate an active key.",
                       code="key_not_active")
    version.advance()
    return successor


def revoke_own_key(principal: Principal, key_id: str, *, store: AccountStore, version: AccountsVersion,
                   now: datetime) -> ApiKeyRecord:
    revoked = store.revoke_key(key_id, user_id=principal.user_id, now=now)
    if revoked is None:
        raise NotFound(f"You have no key {key_id}.", code="key_not_found")
    version.advance()
    return revoked


# -- what operators change ------------------------------------------------------------

def create_admin_key(name: str, role: str, *, store: AccountStore, now: datetime) -> tuple[AdminKeyRecord, str]:
    """An operator's key for the admin API: the plaintext leaves once."""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}.")
    api_key = keys.new_api_key(keys.ADMIN_PREFIX)
    record = AdminKeyRecord(key_id=keys.new_id("adm"), key_hash=keys.hash_key(api_key), name=name, role=role,
                            created_at=now)
    store.add_admin_key(record)
    return record, api_key


def change_user(operator: Operator, user_id: str, *, plan: str | None = None, overrides: dict[str, int | None] | None = None,
                status: str | None = None, store: AccountStore, version: AccountsVersion,
                plans: PlanCatalog) -> UserRecord:
    """Move a user to another plan, set or clear overrides of its figures, suspend or reactivate
    them; every instance applies it within a second."""
    _may_change(operator)
    existing = existing_user(user_id, store=store)
    changes: dict = {}
    if plan is not None:
        if plans.get(plan) is None:
            raise InvalidRequest(f"There is no plan '{plan}' (plans: {', '.join(plans.names())}).")
        changes["plan"] = plan
    if overrides is not None:
        unknown = set(overrides) - set(FIGURES)
        if unknown:
            raise InvalidRequest(f"overrides may set {', '.join(FIGURES)}; not {', '.join(sorted(unknown))}.")
        merged = {**existing.overrides, **overrides}
        changes["overrides"] = {name: value for name, value in merged.items() if value is not None}
        base = plans.get(changes.get("plan", existing.plan)) or plans.default
        try:
            Plan.model_validate({**base.model_dump(), **changes["overrides"]})
        except ValueError as error:
            raise InvalidRequest(f"overrides are out of range: {_first_problem(error)}") from None
    if status is not None:
        if status not in ("active", "suspended"):
            raise InvalidRequest("status must be active or suspended.")
        changes["status"] = status
    if not changes:
        raise InvalidRequest("Say what to change: plan, overrides or status.")
    action = "suspend" if status == "suspended" else "reactivate" if status == "active" else "change_user"
    changed = store.change_user(user_id, changes, audit=Audit(actor=_actor(operator), action=action))
    if changed is None:
        raise _no_user(user_id)
    version.advance()
    return changed


def grant_tokens(operator: Operator, user_id: str, tokens: int, *, store: AccountStore, version: AccountsVersion,
                 now: datetime) -> UserRecord:
    """Extra tokens for this month, on top of the user's quota."""
    _may_change(operator)
    changed = store.grant(user_id, period_of(now), tokens, audit=Audit(actor=_actor(operator), action="grant_tokens"))
    if changed is None:
        raise _no_user(user_id)
    version.advance()
    return changed


def revoke_any_key(operator: Operator, key_id: str, *, store: AccountStore, version: AccountsVersion,
                   now: datetime) -> None:
    _may_change(operator)
    audit = Audit(actor=_actor(operator), action="revoke_key")
    if store.revoke_key(key_id, user_id=None, now=now, audit=audit) is None:
        raise NotFound(f"There is no key {key_id}.", code="key_not_found")
    version.advance()


def _first_problem(error: ValueError) -> str:
    problems = getattr(error, "errors", lambda: [])()
    if not problems:
        return str(error)
    return f"{'.'.join(str(part) for part in problems[0]['loc'])} {problems[0]['msg'].lower()}"


def existing_user(user_id: str, *, store: AccountStore) -> UserRecord:
    """The user, or NotFound."""
    user = store.find_user(user_id)
    if user is None:
        raise _no_user(user_id)
    return user


def _no_user(user_id: str) -> NotFound:
    return NotFound(f"There is no user {user_id}.", code="user_not_found")


def identity_user(claims: Claims, *, plans: PlanCatalog, store: AccountStore, now: datetime) -> UserRecord:
    """The user a verified sign-in token stands for, made on their first request with the plan
    the token names (the default plan if it names none this gateway has)."""
    identity = f"{claims.issuer} {claims.subject}"
    plan = plans.get(claims.plan) if claims.plan else None
    return store.find_user_by_identity(identity) or store.create_identity_user(UserRecord(
        user_id=keys.new_id("usr"), email=claims.email, plan=(plan or plans.default).name, created_at=now,
        identity=identity,
    ))


def _may_change(operator: Operator) -> None:
    if not operator.may_change:
        raise Forbidden("This admin key may only read; changes need a key with the admin role.")


def _actor(operator: Operator) -> str:
    return f"{operator.name} ({operator.key_id})"
