"""Who is calling, as it travels from the authorizer to the handlers in API Gateway's
`requestContext.authorizer` map: flat scalars, every value a string when it arrives. A
user's plan travels as its name and its figures, each under its own key; the models they may use
as one comma-separated string."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infergate.domain.errors import InferGateError
from infergate.domain.ledger import Level
from infergate.domain.plans import FIGURES, Plan
from infergate.domain.principal import Operator, Principal
from infergate.domain.teams import TEAM

if TYPE_CHECKING:
    from pydantic import TypeAdapter

USER, OPERATOR = "user", "operator"
# A caller refused for a while (too many failed authentications, or a store that is down):
# API Gateway's own responses cannot say 429 or 503 with Retry-After, so the authorizer lets
# the request through marked so, and the route refuses it.
REFUSED = "refused"


def authorizer_context(caller: Principal | Operator) -> dict[str, str | int | bool]:
    if isinstance(caller, Operator):
        return {"kind": OPERATOR, "key_id": caller.key_id, "name": caller.name, "role": caller.role}
    models = {} if caller.allowed_models is None else {"allowed_models": ",".join(sorted(caller.allowed_models))}
    return {"kind": USER, "user_id": caller.user_id, "key_id": caller.key_id, "plan": caller.plan.name,
            **caller.plan.figures(), "suspended": caller.suspended, "granted_tokens": caller.granted_tokens,
            "granted_period": caller.granted_period, **models, **_team_context(caller.team),
            **({} if caller.key_budget is None else {"key_budget_micros": caller.key_budget.budget_micros}),
            **({} if caller.key_line is None else {"key_line": caller.key_line}),
            # Model names hold no comma and no equals sign (schemas.base.ModelName).
            **({"team_model_quotas": _pairs(caller.team_model_quotas)} if caller.team_model_quotas else {}),
            **({"plan_model_quotas": _pairs(caller.plan.model_quotas)} if caller.plan.model_quotas else {}),
            **({"key_model_quotas": _pairs(caller.key_model_quotas)} if caller.key_model_quotas else {})}


def _pairs(quotas) -> str:
    return ",".join(f"{model}={quota}" for model, quota in sorted(quotas))


def _pairs_from(text: object) -> tuple[tuple[str, int], ...]:
    return tuple((model, int(quota)) for model, quota in (
        entry.split("=", 1) for entry in str(text or "").split(",") if entry))


def _team_context(team: Level | None) -> dict[str, str | int]:
    """The team's limits, each only when set (the map holds no nulls)."""
    if team is None:
        return {}
    figures = {"team_token_quota": team.token_quota, "team_budget_micros": team.budget_micros}
    return {"team_id": team.id, **{name: value for name, value in figures.items() if value is not None}}


def _team_from(context: Mapping[str, Any]) -> Level | None:
    if not context.get("team_id"):
        return None
    quota, budget = context.get("team_token_quota"), context.get("team_budget_micros")
    return Level(TEAM, str(context["team_id"]), None if quota is None else int(quota),
                 None if budget is None else int(budget))


def refused_context(error: InferGateError, *, status: int) -> dict[str, str | int]:
    return {"kind": REFUSED, "status": status, "errorCode": error.code, "errorMessage": error.message,
            "retryAfter": error.retry_after or 1}


def refusal_from(context: Mapping[str, Any]) -> InferGateError | None:
    """The error a refused caller's request gets, or None if `context` is not a refusal."""
    if context.get("kind") != REFUSED:
        return None
    return InferGateError(str(context.get("errorMessage", "Refused.")), code=str(context.get("errorCode", "refused")),
                          retry_after=int(context.get("retryAfter") or 1))


def caller_from(context: Mapping[str, Any]) -> Principal | Operator:
    """The caller in `context`, or ValueError (KeyError) if it does not hold one."""
    if context.get("kind", USER) != USER:
        return _adapter(Operator).validate_python({name: context[name] for name in ("key_id", "name", "role")})
    figures = {name: context[name] for name in FIGURES if name in context}
    plan = _adapter(Plan).validate_python({**figures, "name": context["plan"],
                                           "model_quotas": _pairs_from(context.get("plan_model_quotas"))})
    models = context.get("allowed_models")  # model names hold no comma; absent: any model
    return _adapter(Principal).validate_python({
        "user_id": context["user_id"], "key_id": context["key_id"], "plan": plan,
        "allowed_models": None if models is None else frozenset(filter(None, str(models).split(","))),
        "team": _team_from(context),
        "team_model_quotas": frozenset(_pairs_from(context.get("team_model_quotas"))),
        "key_line": context.get("key_line") or None,
        "key_model_quotas": frozenset(_pairs_from(context.get("key_model_quotas"))),
        "key_budget": None if context.get("key_budget_micros") is None else Level(
            "key", str(context["key_line"]), None, int(context["key_budget_micros"])),
        **{name: context[name] for name in ("suspended", "granted_tokens", "granted_period") if name in context}})


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    # Built on first use, not at import, and pydantic imported with it: cold starts pay only for what they use.
    from pydantic import TypeAdapter

    return TypeAdapter(kind)
