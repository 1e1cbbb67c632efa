"""Who is calling: a user with what their plan allows them, or an operator of the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infergate.domain.ledger import Level
from infergate.domain.model_names import canonical
from infergate.domain.periods import period_of
from infergate.domain.plans import InvalidPlan, Plan, PlanCatalog
from infergate.domain.teams import KEY_MODEL, USER_MODEL, Team, model_level

if TYPE_CHECKING:
    from datetime import datetime

    from infergate.domain.accounts import ApiKeyRecord, UserRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """A user as the authorizer established it: the key they used, and their plan with their
    own overrides."""

    user_id: str
    key_id: str
    plan: Plan
    suspended: bool = False
    granted_tokens: int = 0  # extra tokens an operator granted for `granted_period`
    granted_period: str = ""
    allowed_models: frozenset[str] | None = None  # what the plan, the key and the team allow, `name:tag`; None: any
    team: Level | None = None  # the user's team's month, which each request must fit under too
    key_budget: Level | None = None  # the key's own month, when it has a budget
    team_model_quotas: frozenset[tuple[str, int]] = frozenset()  # the team's per-model quotas, `name:tag`
    key_line: str | None = None  # whose months the key's own limits count in, when it has any
    key_model_quotas: frozenset[tuple[str, int]] = frozenset()  # the key's per-model quotas, `name:tag`

    def levels(self, model: str) -> tuple[Level, ...]:
        """The months above the user's own that each of their requests for `model` must fit under."""
        levels = [level for level in (self.team, self.key_budget) if level is not None]
        wanted = canonical(model)
        if self.team is not None:
            levels += [model_level(self.team.id, wanted, quota) for name, quota in self.team_model_quotas
                       if name == wanted]
        levels += [model_level(self.user_id, wanted, quota, kind=USER_MODEL) for name, quota in self.plan.model_quotas
                   if canonical(name) == wanted]
        if self.key_line is not None:
            levels += [model_level(self.key_line, wanted, quota, kind=KEY_MODEL) for name, quota in
                       self.key_model_quotas if name == wanted]
        return tuple(levels)

    def quota_for(self, period: str) -> int:
        """Tokens the user may be charged in `period` (YYYY-MM)."""
        return self.plan.monthly_token_quota + (self.granted_tokens if period == self.granted_period else 0)

    def may_use(self, model: str) -> bool:
        """Whether the request may name `model` (a model or an alias)."""
        return self.allowed_models is None or canonical(model) in self.allowed_models


def allowed_by_all(*lists: Iterable[str] | None) -> frozenset[str] | None:
    """The models every list allows (a list that is None allows any), as `name:tag`."""
    allowed = None
    for names in lists:
        if names is not None:
            listed = frozenset(canonical(name) for name in names)
            allowed = listed if allowed is None else allowed & listed
    return allowed


@dataclass(frozen=True)
class Operator:
    """An operator, with an admin key: `admin` may change things, `viewer` only read them."""

    key_id: str
    name: str
    role: str

    @property
    def may_change(self) -> bool:
        return self.role == "admin"


def plan_of(user: UserRecord, plans: PlanCatalog) -> Plan:
    """The user's plan, with the figures an operator set for them alone."""
    plan = plans.get(user.plan)
    if plan is None:
        log.warning("user's plan is not defined; applying the default plan", extra={"plan": user.plan})
        plan = plans.default
    if not user.overrides:
        return plan
    try:
        return plan.with_figures(user.overrides)
    except InvalidPlan as error:  # set before the plan's ranges changed: the plan's own figures hold
        log.warning("user's overrides no longer fit the plan; applying the plan", extra={"problem": str(error)})
        return plan


def principal_of(key_id: str, user: UserRecord, plans: PlanCatalog, *, now: datetime,
                 team: Team | None = None, key: ApiKeyRecord | None = None) -> Principal:
    """The user of `key_id` (an API key's id, or their sign-in's) and what their plan allows now;
    `team`: the user's team, if they have one; `key`: the key they came with (none for a sign-in),
    whose own models, budget and per-model quotas hold too."""
    period = period_of(now)
    plan = plan_of(user, plans)
    models = allowed_by_all(plan.allowed_models, key.allowed_models if key else None,
                            team.allowed_models if team else None)
    return Principal(user_id=user.user_id, key_id=key_id, plan=plan,
                     suspended=user.status == "suspended", granted_tokens=user.grants.get(period, 0),
                     granted_period=period, allowed_models=models, team=team.level() if team else None,
                     key_budget=key.budget_level() if key else None, key_line=key.line if key else None,
                     team_model_quotas=_canonical_quotas(team.model_quotas if team else None),
                     key_model_quotas=_canonical_quotas(key.model_quotas if key else None))


def _canonical_quotas(quotas: Iterable[tuple[str, int]] | None) -> frozenset[tuple[str, int]]:
    return frozenset((canonical(model), quota) for model, quota in quotas or ())
