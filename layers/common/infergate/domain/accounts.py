"""Registering users and recognising their API keys."""

from __future__ import annotations

from datetime import datetime

from infergate.domain import keys
from infergate.domain.plans import Plan, PlanCatalogue
from infergate.domain.ports import AccountStore, ApiKeyRecord, UserRecord
from infergate.models.accounts import RegisterResponse
from infergate.models.principal import Principal
from infergate.observability import logger


def register(email: str, *, plan: Plan, store: AccountStore, now: datetime) -> RegisterResponse:
    """Create a user and their first API key. The plaintext key leaves here once, in the response."""
    user = UserRecord(user_id=keys.new_id("usr"), email=email, plan=plan.name, created_at=now)
    api_key = keys.new_api_key()
    key = ApiKeyRecord(key_id=keys.new_id("key"), user_id=user.user_id, key_hash=keys.hash_key(api_key), created_at=now)
    store.create(user, key)
    return RegisterResponse(
        user_id=user.user_id,
        email=user.email,
        api_key=api_key,
        key_id=key.key_id,
        plan=plan.name,
        monthly_token_quota=plan.monthly_token_quota,
    )


def authenticate(api_key: str | None, *, store: AccountStore, plans: PlanCatalogue) -> Principal | None:
    """The principal an API key belongs to, or None for a missing, malformed or unknown key."""
    if not api_key or not keys.is_well_formed(api_key):
        return None
    found = store.find_by_key_hash(keys.hash_key(api_key))
    if found is None:
        return None
    key, user = found
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
