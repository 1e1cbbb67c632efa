"""The admin API, for operators with an admin key (`iga_…`): users, their plans, overrides,
suspension and grants, any key's revocation, usage across users, plans, and the audit log.

Collaborators (wiring): the account store and the audit log (MongoDB), the usage ledger
(MongoDB), when keys were last used (Redis), and the accounts version, advanced by every
change so that every authorizer instance applies it within a second.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import create_app, current_operator, json_response, lambda_entrypoint, parse_body, parse_query
from infergate.clock import utc_now
from infergate.domain import accounts
from infergate.domain.periods import period_of
from infergate.domain.usage import standing_of
from infergate.errors import InvalidRequest
from infergate.models.admin import (
    AuditPage,
    AuditQuery,
    AuditView,
    ChangeUserRequest,
    GrantRequest,
    PlanList,
    PlanView,
    RevokedKey,
    UsageSummary,
    UsageSummaryQuery,
    UserDetail,
    UserPage,
    UserQuery,
    UserView,
    cursor_of,
)
from infergate.models.keys import KeyView
from infergate.models.usage import UsageResponse

app = create_app()


@app.get("/admin/v1/users")
def list_users() -> Response:
    current_operator(app)
    query = parse_query(app, UserQuery)
    users = wiring.account_store().search_users(email=query.email, plan=query.plan, limit=query.limit + 1,
                                                after=query.after)
    page = users[: query.limit]
    more = len(users) > query.limit
    return json_response(UserPage(data=[UserView.of(user) for user in page],
                                  next_cursor=cursor_of(page[-1].user_id) if more else None))


@app.get("/admin/v1/users/<user_id>")
def show_user(user_id: str) -> Response:
    current_operator(app)
    store = wiring.account_store()
    user = accounts.existing_user(user_id, store=store)
    now = utc_now()
    keys = accounts.keys_of(user_id, store=store)
    last_used = wiring.key_activity().last_used([key.key_id for key in keys])
    standing = standing_of(user, plans=wiring.plans(), ledger=wiring.usage_ledger(), now=now)
    return json_response(UserDetail(
        **UserView.of(user).model_dump(), keys=[KeyView.of(key, now=now, last_used=last_used) for key in keys],
        usage=UsageResponse.of(standing),
    ))


@app.patch("/admin/v1/users/<user_id>")
def change_user(user_id: str) -> Response:
    operator = current_operator(app)
    request = parse_body(app, ChangeUserRequest)
    changed = accounts.change_user(operator, user_id, plan=request.plan, overrides=request.overrides,
                                   status=request.status, store=wiring.account_store(),
                                   version=wiring.accounts_version(), plans=wiring.plans())
    return json_response(UserView.of(changed))


@app.post("/admin/v1/users/<user_id>/grants")
def grant_tokens(user_id: str) -> Response:
    operator = current_operator(app)
    request = parse_body(app, GrantRequest)
    changed = accounts.grant_tokens(operator, user_id, request.tokens, store=wiring.account_store(),
                                    version=wiring.accounts_version(), now=utc_now())
    return json_response(UserView.of(changed), status=201)


@app.delete("/admin/v1/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    operator = current_operator(app)
    accounts.revoke_any_key(operator, key_id, store=wiring.account_store(), version=wiring.accounts_version(),
                            now=utc_now())
    return json_response(RevokedKey(key_id=key_id))


@app.get("/admin/v1/usage")
def usage_summary() -> Response:
    current_operator(app)
    query = parse_query(app, UsageSummaryQuery)
    current = period_of(utc_now())
    period = query.period or current
    if period > current:
        raise InvalidRequest(f"period {period} has not begun; the current period is {current}.")
    return json_response(UsageSummary.of(wiring.usage_ledger().period_summary(period, top=query.top)))


@app.get("/admin/v1/plans")
def plans() -> Response:
    current_operator(app)
    catalog = wiring.plans()
    return json_response(PlanList(data=[PlanView.of(plan, default=catalog.default) for plan in catalog.all()]))


@app.get("/admin/v1/audit")
def audit() -> Response:
    current_operator(app)
    query = parse_query(app, AuditQuery)
    entries = wiring.account_store().audit_log(limit=query.limit + 1, before=query.after)
    page = entries[: query.limit]
    more = len(entries) > query.limit
    return json_response(AuditPage(data=[AuditView.of(entry) for entry in page],
                                   next_cursor=cursor_of(page[-1].entry_id) if more else None))


lambda_handler = lambda_entrypoint(app)
