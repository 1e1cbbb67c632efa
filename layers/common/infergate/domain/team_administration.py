"""What operators do with teams: make them, set their quota, budget and models, and add or remove
members. Every change is audited as the operator's and advances the accounts version, so that
every authorizer instance applies it within a second."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from infergate.domain import keys
from infergate.domain.accounts import AccountStore, AccountsVersion, IssuedKey, UserRecord, issue_key
from infergate.domain.administration import audit_of, ensure_may_change
from infergate.domain.errors import Conflict, NotFound
from infergate.domain.ledger import LevelUsage, UsageLedger
from infergate.domain.periods import period_of
from infergate.domain.plans import PlanCatalog
from infergate.domain.principal import Operator
from infergate.domain.teams import FIGURES, Team


class Teams:
    def __init__(self, store: AccountStore, version: AccountsVersion, ledger: UsageLedger, plans: PlanCatalog, *,
                 clock: Callable[[], datetime]) -> None:
        self._store, self._version, self._ledger, self._clock = store, version, ledger, clock
        self._plans = plans

    def list(self, *, limit: int, after: str | None) -> list[Team]:
        return self._store.teams(limit=limit, after=after)

    def team(self, team_id: str) -> Team:
        """The team, or NotFound."""
        team = self._store.find_team(team_id)
        if team is None:
            raise NotFound(f"There is no team {team_id}.", code="team_not_found")
        return team

    def standing(self, team: Team) -> LevelUsage:
        """The team's month so far: charged, and held by requests in flight."""
        now = self._clock()
        return self._ledger.level_usage(team.level(), period_of(now), now=now)

    def members(self, team: Team, *, limit: int) -> list[UserRecord]:
        return self._store.members(team.team_id, limit=limit)

    def create(self, operator: Operator, name: str, figures: Mapping[str, Any]) -> Team:
        ensure_may_change(operator)
        team = Team(team_id=keys.new_id("team"), name=name, created_at=self._clock(),
                    **{name: _value(name, figures.get(name)) for name in FIGURES})
        self._store.create_team(team, audit=audit_of(operator, "create_team"))
        return team

    def change(self, operator: Operator, team_id: str, changes: Mapping[str, Any]) -> Team:
        """Set (or, with None, clear) any of the team's figures; every instance applies it within a second."""
        ensure_may_change(operator)
        self.team(team_id)
        changed = self._store.change_team(team_id, changes, audit=audit_of(operator, "change_team"))
        if changed is None:
            raise NotFound(f"There is no team {team_id}.", code="team_not_found")
        self._version.advance()
        return changed

    def add_member(self, operator: Operator, team_id: str, user_id: str) -> UserRecord:
        ensure_may_change(operator)
        self.team(team_id)
        user = self._user(user_id)
        if user.team_id not in (None, team_id):
            raise Conflict(f"User {user_id} is a member of team {user.team_id}; a user belongs to one team at a "
                           "time: remove them from it first.")
        return self._set_team(operator, user_id, team_id, "add_team_member")

    def remove_member(self, operator: Operator, team_id: str, user_id: str) -> UserRecord:
        ensure_may_change(operator)
        if self._user(user_id).team_id != team_id:
            raise NotFound(f"User {user_id} is not a member of team {team_id}.", code="user_not_found")
        return self._set_team(operator, user_id, None, "remove_team_member")

    def create_service_account(self, operator: Operator, team_id: str, name: str) -> tuple[UserRecord, IssuedKey]:
        """A principal of the team's with a key but no person (a backend's), on the default plan:
        its first key, whose plaintext leaves once. It manages its keys as any user does."""
        ensure_may_change(operator)
        self.team(team_id)
        now = self._clock()
        account = UserRecord(user_id=keys.new_id("usr"), email=None, plan=self._plans.default.name, created_at=now,
                             team_id=team_id, name=name, kind="service")
        issued = issue_key(account.user_id, name=name, now=now)
        self._store.create(account, issued.record, audit=audit_of(operator, "create_service_account"))
        return account, issued

    def _user(self, user_id: str) -> UserRecord:
        user = self._store.find_user(user_id)
        if user is None:
            raise NotFound(f"There is no user {user_id}.", code="user_not_found")
        return user

    def _set_team(self, operator: Operator, user_id: str, team_id: str | None, action: str) -> UserRecord:
        changed = self._store.change_user(user_id, {"team_id": team_id}, audit=audit_of(operator, action))
        if changed is None:
            raise NotFound(f"There is no user {user_id}.", code="user_not_found")
        self._version.advance()
        return changed


def _value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "model_quotas":
        return tuple(sorted(value.items()))
    return tuple(value) if name == "allowed_models" else value
