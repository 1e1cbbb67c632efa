"""The admin API's teams (/admin/v1/teams...): operators' requests as the domain takes them, and
teams as the schemas say them."""

from __future__ import annotations

from collections.abc import Sequence

from aws_lambda_powertools.event_handler import Response

from infergate.api.accounts import team_usage
from infergate.api.admin import page_of, user_view
from infergate.api.app import App, json_response, parse_body
from infergate.domain.accounts import IssuedKey, UserRecord
from infergate.domain.ledger import LevelUsage
from infergate.domain.teams import Team
from infergate.schemas.teams import (
    ChangeTeamRequest,
    CreateTeamRequest,
    MemberRequest,
    ServiceAccountRequest,
    ServiceAccountView,
    TeamDetail,
    TeamMember,
    TeamPage,
    TeamView,
)


def create_request(app: App) -> CreateTeamRequest:
    return parse_body(app, CreateTeamRequest)


def change_request(app: App) -> ChangeTeamRequest:
    return parse_body(app, ChangeTeamRequest)


def member_request(app: App) -> MemberRequest:
    return parse_body(app, MemberRequest)


def team_view(team: Team) -> TeamView:
    return TeamView(team_id=team.team_id, name=team.name, monthly_token_quota=team.monthly_token_quota,
                    monthly_budget_micros=team.monthly_budget_micros, created_at=team.created_at,
                    allowed_models=None if team.allowed_models is None else list(team.allowed_models),
                    model_quotas=None if team.model_quotas is None else dict(team.model_quotas))


def team(team: Team, *, status: int = 200) -> Response:
    return json_response(team_view(team), status=status)


def team_page(teams: Sequence[Team], *, limit: int) -> Response:
    data, cursor = page_of(teams, limit, lambda team: team.team_id)
    return json_response(TeamPage(data=[team_view(team) for team in data], next_cursor=cursor))


def team_detail(team: Team, month: LevelUsage, members: Sequence[UserRecord], *, currency: str) -> Response:
    return json_response(TeamDetail(**team_view(team).model_dump(), usage=team_usage(team.level(), month),
                                    currency=currency,
                                    members=[TeamMember(user_id=user.user_id, email=user.email, kind=user.kind,
                                                        name=user.name) for user in members]))


def service_account_request(app: App) -> ServiceAccountRequest:
    return parse_body(app, ServiceAccountRequest)


def service_account(account: UserRecord, key: IssuedKey) -> Response:
    return json_response(ServiceAccountView(
        user_id=account.user_id, name=account.name or "", team_id=account.team_id or "", plan=account.plan,
        key_id=key.record.key_id, api_key=key.api_key, created_at=account.created_at), status=201)


def member(user: UserRecord) -> Response:
    return json_response(user_view(user))
