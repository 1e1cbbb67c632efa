"""The admin API (/admin/v1/...): operators' requests as the domain takes them, and users,
keys, plans, usage and the audit log as the schemas say them, a page at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TypeVar

from aws_lambda_powertools.event_handler import Response

from infergate.api.accounts import key_view, usage_response
from infergate.api.app import App, json_response, parse_body, parse_query
from infergate.domain.accounts import AdminKeyRecord, ApiKeyRecord, AuditEntry, AuditFilter, UserRecord
from infergate.domain.ledger import PeriodSummary, Share
from infergate.domain.own_keys import KeyState
from infergate.domain.plans import PlanCatalog
from infergate.domain.prices import PriceList
from infergate.domain.servers import ServerReport
from infergate.domain.usage import Standing
from infergate.schemas.admin import (
    AdminKeyList,
    AdminKeyView,
    AuditPage,
    AuditQuery,
    AuditView,
    ChangeKeyRequest,
    ChangeUserRequest,
    CreateAdminKeyRequest,
    GrantRequest,
    IssuedAdminKey,
    PageQuery,
    PlanList,
    PlanView,
    PriceView,
    RevokedKey,
    ServerList,
    ServerView,
    UsageRange,
    UsageSummary,
    UsageSummaryQuery,
    UserDetail,
    UserPage,
    UserQuery,
    UserUsage,
    UserView,
    cursor_of,
)
from infergate.schemas.admin import PriceList as PriceListView
from infergate.schemas.admin import (
    Share as ShareView,
)

T = TypeVar("T")


def user_query(app: App) -> UserQuery:
    return parse_query(app, UserQuery)


def page_query(app: App) -> PageQuery:
    return parse_query(app, PageQuery)


def audit_query(app: App) -> AuditQuery:
    return parse_query(app, AuditQuery)


def audit_filter(query: AuditQuery) -> AuditFilter:
    return AuditFilter(actor=query.actor, subject=query.subject, action=query.action)


def change_request(app: App) -> ChangeUserRequest:
    return parse_body(app, ChangeUserRequest)


def change_key_request(app: App) -> ChangeKeyRequest:
    return parse_body(app, ChangeKeyRequest)


def changed_key(record: ApiKeyRecord, *, now: datetime) -> Response:
    return json_response(key_view(KeyState(record, record.status(now), None)))


def grant_request(app: App) -> GrantRequest:
    return parse_body(app, GrantRequest)


def summary_query(app: App) -> UsageSummaryQuery:
    return parse_query(app, UsageSummaryQuery)


def user_view(user: UserRecord) -> UserView:
    return UserView(user_id=user.user_id, email=user.email, plan=user.plan, status=user.status,
                    overrides=dict(user.overrides), grants=dict(user.grants), identity=user.identity,
                    team_id=user.team_id, kind=user.kind, name=user.name, created_at=user.created_at)


def user(user: UserRecord, *, status: int = 200) -> Response:
    return json_response(user_view(user), status=status)


def user_page(users: Sequence[UserRecord], *, limit: int) -> Response:
    """A page of `limit` users; `users` holds one more when there is a next page."""
    data, cursor = page_of(users, limit, lambda user: user.user_id)
    return json_response(UserPage(data=[user_view(user) for user in data], next_cursor=cursor))


def user_detail(user: UserRecord, keys: list[KeyState], standing: Standing) -> Response:
    return json_response(UserDetail(**user_view(user).model_dump(), keys=[key_view(key) for key in keys],
                                    usage=usage_response(standing)))


def admin_key_request(app: App) -> CreateAdminKeyRequest:
    return parse_body(app, CreateAdminKeyRequest)


def admin_key_view(key: AdminKeyRecord) -> AdminKeyView:
    return AdminKeyView(key_id=key.key_id, name=key.name, role=key.role, created_at=key.created_at,
                        revoked_at=key.revoked_at, status="revoked" if key.revoked_at else "active")


def admin_keys(keys: Sequence[AdminKeyRecord]) -> Response:
    return json_response(AdminKeyList(data=[admin_key_view(key) for key in keys]))


def issued_admin_key(key: AdminKeyRecord, api_key: str) -> Response:
    return json_response(IssuedAdminKey(**admin_key_view(key).model_dump(), api_key=api_key), status=201)


def revoked(key_id: str) -> Response:
    return json_response(RevokedKey(key_id=key_id))


def summary(summary: PeriodSummary, *, currency: str, by: str | None = None,
            shares: Sequence[Share] | None = None) -> Response:
    return json_response(UsageSummary(
        period=summary.period, tokens_used=summary.tokens_used, requests=summary.requests, users=summary.users,
        cost_micros=summary.cost_micros, currency=currency,
        top=[UserUsage(user_id=t.user_id, tokens=t.tokens, requests=t.requests, cost_micros=t.cost_micros)
             for t in summary.top],
        by=by, breakdown=None if shares is None else [ShareView(**dataclasses.asdict(share)) for share in shares]))


def usage_range(start: date, end: date, shares: Sequence[Share], *, by: str, currency: str) -> Response:
    return json_response(UsageRange(
        start=start, end=end, by=by, currency=currency, tokens_used=sum(share.tokens for share in shares),
        requests=sum(share.requests for share in shares), cost_micros=sum(share.cost_micros for share in shares),
        breakdown=[ShareView(**dataclasses.asdict(share)) for share in shares]))


def breakdown_csv(shares: Sequence[Share], *, by: str, period: str, currency: str) -> Response:
    """The breakdown as a spreadsheet reads it: one row a team, user, key or model."""
    rows = [f"period,{by},tokens,requests,cost_micros,currency"]
    rows += [f"{period},{_csv_cell(share.id)},{share.tokens},{share.requests},{share.cost_micros},{currency}"
             for share in shares]
    return Response(status_code=200, content_type="text/csv; charset=utf-8", body="\r\n".join(rows) + "\r\n",
                    headers={"Content-Disposition": f'attachment; filename="usage-{period}-by-{by}.csv"'})


def _csv_cell(text: str) -> str:
    """A cell as RFC 4180 quotes it, and never read as a formula by a spreadsheet."""
    if text[:1] in ("=", "+", "-", "@"):
        text = "'" + text
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def prices(prices: PriceList, *, currency: str) -> Response:
    return json_response(PriceListView(currency=currency, prices={
        name: PriceView(input_per_million_micros=price.input_per_million_micros,
                        output_per_million_micros=price.output_per_million_micros)
        for name, price in prices.named().items()}))


def plans(catalog: PlanCatalog) -> Response:
    return json_response(PlanList(data=[
        PlanView(**plan.figures(), name=plan.name, default=plan.name == catalog.default.name,
                 allowed_models=None if plan.allowed_models is None else list(plan.allowed_models),
                 model_quotas=dict(plan.model_quotas))
        for plan in catalog.all()]))


def servers(reports: Sequence[ServerReport]) -> Response:
    return json_response(ServerList(data=[ServerView(**dataclasses.asdict(report)) for report in reports]))


def audit_page(entries: Sequence[AuditEntry], *, limit: int) -> Response:
    """A page of `limit` entries; `entries` holds one more when there is a next page."""
    data, cursor = page_of(entries, limit, lambda entry: entry.entry_id)
    return json_response(AuditPage(data=[
        AuditView(entry_id=entry.entry_id, actor=entry.actor, at=entry.at, action=entry.action,
                  subject=dict(entry.subject), before=entry.before, after=entry.after) for entry in data],
        next_cursor=cursor))


def page_of(items: Sequence[T], limit: int, id_of: Callable[[T], str]) -> tuple[Sequence[T], str | None]:
    page = items[:limit]
    return page, cursor_of(id_of(page[-1])) if len(items) > limit else None
