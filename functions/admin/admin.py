"""The admin API, for operators with an admin key (`iga_…`): users, their plans, overrides,
suspension and grants, any key's revocation, admin keys themselves, teams and their members,
usage across users, plans, prices, the model servers, and the audit log.

Collaborators: the account store and the audit log (MongoDB), the usage ledger (MongoDB),
when keys were last used (Redis), and the accounts version, advanced by every change so that
every authorizer instance applies it within a second.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api import admin, teams
from infergate.api.app import create_app, current_operator, json_response, lambda_entrypoint
from infergate.bootstrap import instance

services = instance()
app = create_app(services)


@app.get("/admin/v1/users")
def list_users() -> Response:
    current_operator(app)
    query = admin.user_query(app)
    users = services.administration.users(email=query.email, plan=query.plan, limit=query.limit + 1, after=query.after)
    return admin.user_page(users, limit=query.limit)


@app.get("/admin/v1/users/<user_id>")
def show_user(user_id: str) -> Response:
    current_operator(app)
    user = services.administration.user(user_id)
    return admin.user_detail(user, services.administration.keys_of(user_id), services.usage.of_user(user))


@app.patch("/admin/v1/users/<user_id>")
def change_user(user_id: str) -> Response:
    operator = current_operator(app)
    request = admin.change_request(app)
    return admin.user(services.administration.change_user(operator, user_id, plan=request.plan,
                                                          overrides=request.overrides, status=request.status))


@app.post("/admin/v1/users/<user_id>/grants")
def grant_tokens(user_id: str) -> Response:
    operator = current_operator(app)
    request = admin.grant_request(app)
    return admin.user(services.administration.grant_tokens(operator, user_id, request.tokens), status=201)


@app.patch("/admin/v1/keys/<key_id>")
def change_key(key_id: str) -> Response:
    operator = current_operator(app)
    changes = admin.change_key_request(app).changes()
    return admin.changed_key(services.administration.change_key(operator, key_id, changes), now=services.clock())


@app.delete("/admin/v1/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    services.administration.revoke_key(current_operator(app), key_id)
    return admin.revoked(key_id)


@app.get("/admin/v1/admin-keys")
def list_admin_keys() -> Response:
    return admin.admin_keys(services.administration.admin_keys(current_operator(app)))


@app.post("/admin/v1/admin-keys")
def create_admin_key() -> Response:
    operator = current_operator(app)
    request = admin.admin_key_request(app)
    return admin.issued_admin_key(*services.administration.create_admin_key(operator, request.name, request.role))


@app.delete("/admin/v1/admin-keys/<key_id>")
def revoke_admin_key(key_id: str) -> Response:
    return json_response(admin.admin_key_view(services.administration.revoke_admin_key(current_operator(app), key_id)))


@app.get("/admin/v1/usage")
def usage_summary() -> Response:
    current_operator(app)
    query = admin.summary_query(app)
    currency = services.settings.currency
    if query.start is not None:
        shares = services.usage.breakdown_days(query.start, query.end, query.by)
        if query.format == "csv":
            return admin.breakdown_csv(shares, by=query.by, period=f"{query.start}..{query.end}", currency=currency)
        return admin.usage_range(query.start, query.end, shares, by=query.by, currency=currency)
    summary = services.usage.summary(query.period, top=query.top)
    if query.by is None:
        return admin.summary(summary, currency=currency)
    shares = services.usage.breakdown(summary.period, query.by)
    if query.format == "csv":
        return admin.breakdown_csv(shares, by=query.by, period=summary.period, currency=currency)
    return admin.summary(summary, currency=currency, by=query.by, shares=shares)


@app.get("/admin/v1/plans")
def plans() -> Response:
    current_operator(app)
    return admin.plans(services.plans)


@app.get("/admin/v1/teams")
def list_teams() -> Response:
    current_operator(app)
    query = admin.page_query(app)
    return teams.team_page(services.teams.list(limit=query.limit + 1, after=query.after), limit=query.limit)


@app.post("/admin/v1/teams")
def create_team() -> Response:
    operator = current_operator(app)
    request = teams.create_request(app)
    figures = request.model_dump(exclude={"name"})
    return teams.team(services.teams.create(operator, request.name, figures), status=201)


@app.get("/admin/v1/teams/<team_id>")
def show_team(team_id: str) -> Response:
    current_operator(app)
    team = services.teams.team(team_id)
    return teams.team_detail(team, services.teams.standing(team), services.teams.members(team, limit=100),
                             currency=services.settings.currency)


@app.patch("/admin/v1/teams/<team_id>")
def change_team(team_id: str) -> Response:
    operator = current_operator(app)
    return teams.team(services.teams.change(operator, team_id, teams.change_request(app).changes()))


@app.post("/admin/v1/teams/<team_id>/members")
def add_member(team_id: str) -> Response:
    operator = current_operator(app)
    return teams.member(services.teams.add_member(operator, team_id, teams.member_request(app).user_id))


@app.post("/admin/v1/teams/<team_id>/service-accounts")
def create_service_account(team_id: str) -> Response:
    operator = current_operator(app)
    name = teams.service_account_request(app).name
    return teams.service_account(*services.teams.create_service_account(operator, team_id, name))


@app.delete("/admin/v1/teams/<team_id>/members/<user_id>")
def remove_member(team_id: str, user_id: str) -> Response:
    return teams.member(services.teams.remove_member(current_operator(app), team_id, user_id))


@app.get("/admin/v1/prices")
def prices() -> Response:
    current_operator(app)
    return admin.prices(services.prices, currency=services.settings.currency)


@app.get("/admin/v1/servers")
def servers() -> Response:
    current_operator(app)
    return admin.servers(services.server_reports.all())


@app.get("/admin/v1/audit")
def audit() -> Response:
    current_operator(app)
    query = admin.audit_query(app)
    entries = services.administration.audit(limit=query.limit + 1, before=query.after, only=admin.audit_filter(query))
    return admin.audit_page(entries, limit=query.limit)


lambda_handler = lambda_entrypoint(app)
