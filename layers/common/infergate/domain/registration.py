"""Registering: a new user, with an email, and their first API key, at most so many an hour
from one address. (A user of single sign-on comes to be on their first request instead:
authentication.identity_user.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from infergate.domain import keys
from infergate.domain.accounts import AccountStore, IssuedKey, UserRecord, issue_key
from infergate.domain.admission import Gatekeeper
from infergate.domain.plans import Plan


@dataclass(frozen=True)
class Registration:
    user: UserRecord
    key: IssuedKey
    plan: Plan


class Registrar:
    def __init__(self, store: AccountStore, gatekeeper: Gatekeeper, *, plan: Plan, per_hour: int,
                 clock: Callable[[], datetime]) -> None:
        """`plan`: what new users get; `per_hour`: registrations one address may make in an hour."""
        self._store, self._gatekeeper, self._plan, self._per_hour, self._clock = store, gatekeeper, plan, per_hour, clock

    def register(self, email: str, *, source_ip: str) -> Registration:
        """A user and their first API key; RateLimited past the address's registrations per hour."""
        self._gatekeeper.admit_registration(source_ip, per_hour=self._per_hour)
        return register(email, plan=self._plan, store=self._store, now=self._clock())


def register(email: str, *, plan: Plan, store: AccountStore, now: datetime) -> Registration:
    """Create a user, on `plan`, and their first API key."""
    user = UserRecord(user_id=keys.new_id("usr"), email=email, plan=plan.name, created_at=now)
    issued = issue_key(user.user_id, name="default", now=now)
    store.create(user, issued.record)
    return Registration(user=user, key=issued, plan=plan)
