"""Teams in MongoDB, for the account store (stores/accounts.py), whose transactions and audit log
they share: a team and its audit entry change together.

  {_id: "team_…", name, monthly_token_quota?, monthly_budget_micros?, allowed_models?, created_at}

A user's team is the `team_id` on the user's own document, so a user belongs to at most one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from infergate.domain.accounts import Audit
from infergate.domain.teams import FIGURES, Team
from infergate.stores.mongo import quotas_of, set_or_unset, stored, unavailable_when_unreachable

T = TypeVar("T")


class TeamRecords:
    """The account store's teams. Its `_teams`, `_users`, `_transaction` and `_record` are the store's."""

    _teams: Collection
    _users: Collection
    _transaction: Callable[[Callable[[ClientSession], Any]], Any]
    _record: Callable[..., None]
    _change_audited: Callable[..., dict | None]

    @unavailable_when_unreachable
    def find_team(self, team_id: str) -> Team | None:
        document = self._teams.find_one({"_id": team_id})
        return _team(document) if document else None

    @unavailable_when_unreachable
    def teams(self, *, limit: int, after: str | None) -> list[Team]:
        query = {"_id": {"$gt": after}} if after else {}
        return [_team(document) for document in self._teams.find(query).sort("_id", 1).limit(limit)]

    @unavailable_when_unreachable
    def create_team(self, team: Team, *, audit: Audit) -> None:
        document = {"_id": team.team_id, "name": team.name, "created_at": team.created_at,
                    **{name: stored(getattr(team, name)) for name in FIGURES if getattr(team, name) is not None}}

        def create(session: ClientSession) -> None:
            self._teams.insert_one(document, session=session)
            self._record(session, audit, {"type": "team", "id": team.team_id}, None, document)

        self._transaction(create)

    @unavailable_when_unreachable
    def change_team(self, team_id: str, changes: Mapping[str, Any], *, audit: Audit) -> Team | None:
        document = self._change_audited(self._teams, {"type": "team", "id": team_id}, set_or_unset(changes, stored),
                                        audit)
        return _team(document) if document else None

    @unavailable_when_unreachable
    def members(self, team_id: str, *, limit: int) -> list:
        from infergate.stores.accounts import user_record

        return [user_record(document) for document in self._users.find({"team_id": team_id}).sort("_id", 1).limit(limit)]


def _team(document: dict) -> Team:
    models = document.get("allowed_models")
    return Team(team_id=document["_id"], name=document["name"], created_at=document["created_at"],
                monthly_token_quota=document.get("monthly_token_quota"),
                monthly_budget_micros=document.get("monthly_budget_micros"),
                allowed_models=None if models is None else tuple(models),
                model_quotas=quotas_of(document))
