"""What operators change, with an admin key: plans, overrides, suspension and grants of a
user, any key's revocation, and admin keys themselves. Every change is recorded in the
audit log with who made it, and advances the accounts version, so that every authorizer
instance applies it within a second. A viewer's key may only read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from infergate.domain import keys
from infergate.domain.accounts import (
    AccountStore,
    AccountsVersion,
    AdminKeyRecord,
    ApiKeyRecord,
    Audit,
    AuditEntry,
    AuditFilter,
    KeyActivity,
    UserRecord,
)
from infergate.domain.errors import Forbidden, InvalidRequest, NotFound
from infergate.domain.own_keys import KeyState, states
from infergate.domain.periods import period_of
from infergate.domain.plans import FIGURES, InvalidPlan, Plan, PlanCatalog
from infergate.domain.principal import Operator, allowed_by_all

ROLES = ("admin", "viewer")


class Administration:
    def __init__(self, store: AccountStore, version: AccountsVersion, plans: PlanCatalog, activity: KeyActivity, *,
                 clock: Callable[[], datetime]) -> None:
        self._store, self._version, self.plans, self._activity, self._clock = store, version, plans, activity, clock

    # -- reading -------------------------------------------------------------------------

    def users(self, *, email: str | None, plan: str | None, limit: int, after: str | None) -> list[UserRecord]:
        """Users by id, after `after`: those whose email starts with `email`, on `plan`."""
        return self._store.search_users(email=email, plan=plan, limit=limit, after=after)

    def user(self, user_id: str) -> UserRecord:
        """The user, or NotFound."""
        user = self._store.find_user(user_id)
        if user is None:
            raise _no_user(user_id)
        return user

    def keys_of(self, user_id: str) -> list[KeyState]:
        return states(self._store.keys_of(user_id), activity=self._activity, now=self._clock())

    def audit(self, *, limit: int, before: str | None, only: AuditFilter = AuditFilter()) -> list[AuditEntry]:
        """The newest entries first, those older than entry `before` when given, those `only` lets through."""
        return self._store.audit_log(limit=limit, before=before, only=only)

    # -- changing ------------------------------------------------------------------------

    def change_user(self, operator: Operator, user_id: str, *, plan: str | None = None,
                    overrides: dict[str, int | None] | None = None, status: str | None = None) -> UserRecord:
        """Move a user to another plan, set or clear overrides of its figures, suspend or reactivate
        them; every instance applies it within a second."""
        ensure_may_change(operator)
        existing = self.user(user_id)
        changes: dict = {}
        if plan is not None:
            if self.plans.get(plan) is None:
                raise InvalidRequest(f"There is no plan '{plan}' (plans: {', '.join(self.plans.names())}).")
            changes["plan"] = plan
        if overrides is not None:
            base = self.plans.get(changes.get("plan", existing.plan)) or self.plans.default
            changes["overrides"] = _overridden(existing, overrides, base)
        if status is not None:
            if status not in ("active", "suspended"):
                raise InvalidRequest("status must be active or suspended.")
            changes["status"] = status
        if not changes:
            raise InvalidRequest("Say what to change: plan, overrides or status.")
        action = "suspend" if status == "suspended" else "reactivate" if status == "active" else "change_user"
        return self._changed(user_id, self._store.change_user(user_id, changes, audit=audit_of(operator, action)))

    def grant_tokens(self, operator: Operator, user_id: str, tokens: int) -> UserRecord:
        """Extra tokens for this month, on top of the user's quota."""
        ensure_may_change(operator)
        granted = self._store.grant(user_id, period_of(self._clock()), tokens, audit=audit_of(operator, "grant_tokens"))
        return self._changed(user_id, granted)

    def revoke_key(self, operator: Operator, key_id: str) -> None:
        """Revoke any user's key."""
        ensure_may_change(operator)
        if self._store.revoke_key(key_id, user_id=None, now=self._clock(), audit=audit_of(operator, "revoke_key")) is None:
            raise NotFound(f"There is no key {key_id}.", code="key_not_found")
        self._version.advance()

    def change_key(self, operator: Operator, key_id: str, changes: dict) -> ApiKeyRecord:
        """Set (None: clear) any user's key's monthly budget, models or per-model quotas; every instance
        applies it within a second."""
        ensure_may_change(operator)
        if "allowed_models" in changes and changes["allowed_models"] is not None:
            changes = {**changes, "allowed_models": sorted(allowed_by_all(changes["allowed_models"]) or ())}
        if changes.get("model_quotas") is not None:
            changes = {**changes, "model_quotas": tuple(sorted(changes["model_quotas"].items()))}
        changed = self._store.change_key(key_id, changes, audit=audit_of(operator, "change_key"))
        if changed is None:
            raise NotFound(f"There is no key {key_id}.", code="key_not_found")
        self._version.advance()
        return changed

    def admin_keys(self, operator: Operator) -> list[AdminKeyRecord]:
        """Every admin key (never a secret): for the admin role only, as making and revoking them are."""
        ensure_may_change(operator)
        return self._store.admin_keys()

    def create_admin_key(self, operator: Operator, name: str, role: str) -> tuple[AdminKeyRecord, str]:
        """An admin key, audited as the operator's doing; its plaintext leaves once."""
        ensure_may_change(operator)
        return create_admin_key(name, role, store=self._store, now=self._clock(),
                                audit=audit_of(operator, "create_admin_key"))

    def revoke_admin_key(self, operator: Operator, key_id: str) -> AdminKeyRecord:
        """Revoke an admin key; every instance refuses it within a second."""
        ensure_may_change(operator)
        revoked = self._store.revoke_admin_key(key_id, now=self._clock(), audit=audit_of(operator, "revoke_admin_key"))
        if revoked is None:
            raise NotFound(f"There is no admin key {key_id}.", code="key_not_found")
        self._version.advance()
        return revoked

    def _changed(self, user_id: str, changed: UserRecord | None) -> UserRecord:
        """The user as changed, once every instance is told; NotFound if there was no such user."""
        if changed is None:
            raise _no_user(user_id)
        self._version.advance()
        return changed


# Who made an admin key straight in MongoDB, as the audit log names it.
BOOTSTRAP = Audit(actor="make admin-key (straight in MongoDB)", action="create_admin_key")


def create_admin_key(name: str, role: str, *, store: AccountStore, now: datetime,
                     audit: Audit = BOOTSTRAP) -> tuple[AdminKeyRecord, str]:
    """An operator's key for the admin API, audited: the plaintext leaves once. (`make admin-key`
    makes the first, straight in MongoDB; the admin API the others.)"""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}.", param="role")
    api_key = keys.new_api_key(keys.ADMIN_PREFIX)
    record = AdminKeyRecord(key_id=keys.new_id("adm"), key_hash=keys.hash_key(api_key), name=name, role=role,
                            created_at=now)
    store.add_admin_key(record, audit=audit)
    return record, api_key


def _overridden(user: UserRecord, overrides: dict[str, int | None], plan: Plan) -> dict[str, int]:
    """The user's overrides with `overrides` applied (None clears one), checked against the plan's ranges."""
    unknown = set(overrides) - set(FIGURES)
    if unknown:
        raise InvalidRequest(f"overrides may set {', '.join(FIGURES)}; not {', '.join(sorted(unknown))}.")
    merged = {name: value for name, value in {**user.overrides, **overrides}.items() if value is not None}
    try:
        plan.with_figures(merged)
    except InvalidPlan as error:
        raise InvalidRequest(f"overrides are out of range: {error}") from None
    return merged


def _no_user(user_id: str) -> NotFound:
    return NotFound(f"There is no user {user_id}.", code="user_not_found")


def ensure_may_change(operator: Operator) -> None:
    if not operator.may_change:
        raise Forbidden("This admin key may only read; changes need a key with the admin role.")


def audit_of(operator: Operator, action: str) -> Audit:
    return Audit(actor=f"{operator.name} ({operator.key_id})", action=action)
