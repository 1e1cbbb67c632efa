"""A user's own account routes (POST /v1/register, /v1/keys..., GET /v1/usage): their
requests as the domain takes them, and the domain's answers as the schemas say them."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api.app import App, json_response, parse_body, parse_query
from infergate.domain.accounts import IssuedKey
from infergate.domain.ledger import Level, LevelUsage
from infergate.domain.own_keys import KeyState
from infergate.domain.registration import Registration
from infergate.domain.usage import Standing
from infergate.schemas.accounts import RegisterRequest, RegisterResponse
from infergate.schemas.keys import CreateKeyRequest, IssuedKeyView, KeyList, KeyView, RotateKeyRequest
from infergate.schemas.usage import KeyBudgetUsage, Tally, TeamUsage, UsageQuery, UsageResponse


def registration_request(app: App) -> RegisterRequest:
    return parse_body(app, RegisterRequest)


def registered(registration: Registration) -> Response:
    return json_response(RegisterResponse(
        user_id=registration.user.user_id, email=registration.user.email, api_key=registration.key.api_key,
        key_id=registration.key.record.key_id, plan=registration.plan.name,
        monthly_token_quota=registration.plan.monthly_token_quota,
    ), status=201)


def key_request(app: App) -> CreateKeyRequest:
    return parse_body(app, CreateKeyRequest, optional=True)


def rotation_request(app: App) -> RotateKeyRequest:
    return parse_body(app, RotateKeyRequest, optional=True)


def key_view(key: KeyState) -> KeyView:
    record = key.record
    return KeyView(key_id=record.key_id, name=record.name, prefix=record.prefix, created_at=record.created_at,
                   last_used_at=key.last_used_at, expires_at=record.grace_until or record.expires_at, status=key.status,
                   allowed_models=None if record.allowed_models is None else list(record.allowed_models),
                   monthly_budget_micros=record.monthly_budget_micros,
                   model_quotas=None if record.model_quotas is None else dict(record.model_quotas))


def issued(key: IssuedKey, *, replaces: str | None = None) -> Response:
    """A key just made, its plaintext shown this once; it stands as it did when it was made."""
    record = key.record
    view = key_view(KeyState(record, record.status(record.created_at), None))
    return json_response(IssuedKeyView(**view.model_dump(), api_key=key.api_key, replaces=replaces), status=201)


def key_list(keys: list[KeyState]) -> Response:
    return json_response(KeyList(data=[key_view(key) for key in keys]))


def usage_query(app: App) -> UsageQuery:
    return parse_query(app, UsageQuery)


def usage_response(standing: Standing) -> UsageResponse:
    usage = standing.usage
    return UsageResponse(
        period=usage.period,
        tokens_used=usage.tokens_used,
        tokens_reserved=usage.tokens_reserved,
        token_quota=standing.token_quota,
        tokens_remaining=standing.tokens_remaining,
        requests=usage.requests,
        cost_micros=usage.cost_micros,
        currency=standing.currency,
        resets_at=standing.resets_at,
        by_model={name: _tally(t) for name, t in usage.by_model.items()},
        by_day={day: _tally(t) for day, t in sorted(usage.by_day.items())},
        team=None if standing.team is None else team_usage(*standing.team),
        key=None if standing.key is None else _key_usage(*standing.key),
    )


def team_usage(team: Level, month: LevelUsage) -> TeamUsage:
    return TeamUsage(team_id=team.id, tokens_used=month.tokens_used, token_quota=team.token_quota,
                     tokens_reserved=month.tokens_reserved, cost_micros=month.cost_micros,
                     budget_micros=team.budget_micros, micros_reserved=month.micros_reserved, requests=month.requests)


def _key_usage(key: Level, month: LevelUsage) -> KeyBudgetUsage:
    return KeyBudgetUsage(budget_id=key.id, tokens_used=month.tokens_used, cost_micros=month.cost_micros,
                          budget_micros=key.budget_micros or 0, micros_reserved=month.micros_reserved,
                          requests=month.requests)


def _tally(tally) -> Tally:
    return Tally(tokens=tally.tokens, requests=tally.requests, cost_micros=tally.cost_micros)
