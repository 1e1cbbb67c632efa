"""Teams: users who share limits above their own. A team has a monthly token quota and a monthly
budget in micros of CURRENCY (either may be unset), and may list the models its members may use.
A user belongs to at most one team; each of their requests must fit under their own quota and
their team's, and is charged at both (the ledger's levels: domain/ledger.Level)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from infergate.domain.ledger import Level

TEAM = "team"
TEAM_MODEL = "team_model"  # a team's month of one model, under a per-model quota
USER_MODEL = "user_model"  # a user's month of one model, under their plan's per-model quota
KEY_MODEL = "key_model"  # a key line's month of one model, under the key's per-model quota
FIGURES = ("monthly_token_quota", "monthly_budget_micros", "allowed_models", "model_quotas")


@dataclass(frozen=True)
class Team:
    team_id: str
    name: str
    created_at: datetime
    monthly_token_quota: int | None = None
    monthly_budget_micros: int | None = None
    allowed_models: tuple[str, ...] | None = None  # None: any model
    model_quotas: tuple[tuple[str, int], ...] | None = None  # (model, tokens a month): a quota of its own

    def level(self) -> Level:
        return Level(TEAM, self.team_id, self.monthly_token_quota, self.monthly_budget_micros)


def model_level(owner: str, model: str, quota: int, *, kind: str = TEAM_MODEL) -> Level:
    """A team's (or, of kind USER_MODEL, a user's; of KEY_MODEL, a key line's) month of one model
    (`name:tag`), under its quota."""
    return Level(kind, f"{owner}:{model}", quota, None)
