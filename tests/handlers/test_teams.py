"""Teams through the admin API and the chat routes: an operator makes a team with a token quota,
a budget and models, adds members; each member's chats are held and charged at the team too, and
refused, naming the team, once its quota or budget is spent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from infergate.domain.administration import create_admin_key
from infergate.domain.periods import utc_now
from infergate.domain.prices import Price
from infergate.stores.accounts import MongoAccountStore
from tests.handlers.conftest import body, header
from tests.support.functions import reset_instance_state

PRICE = {"input_per_million_micros": 1_000_000, "output_per_million_micros": 2_000_000}  # 1 and 2 micros a token


@pytest.fixture
def admin(database) -> str:
    return create_admin_key("ops", "admin", store=MongoAccountStore(database), now=utc_now())[1]


@pytest.fixture
def priced(monkeypatch, environment):
    monkeypatch.setenv("MODEL_PRICES", json.dumps({"smollm2:135m": PRICE}))
    reset_instance_state()


def make_team(api, admin: str, **figures) -> dict:
    made = api.call("POST", "/admin/v1/teams", key=admin, body={"name": "ml", **figures})
    assert made["statusCode"] == 201, made
    return body(made)


def member(api, admin: str, team: dict, email: str) -> tuple[str, str]:
    account = api.register(email)
    added = api.call("POST", f"/admin/v1/teams/{team['team_id']}/members", key=admin,
                     body={"user_id": account["user_id"]})
    assert added["statusCode"] == 200 and body(added)["team_id"] == team["team_id"], added
    return account["user_id"], account["api_key"]


def chat(api, key: str, *, model: str = "smollm2:135m", max_tokens: int = 5) -> dict:
    return api.call("POST", "/v1/chat/completions", key=key, body={
        "model": model, "messages": [{"role": "user", "content": "hello team"}], "max_tokens": max_tokens})


def test_members_chats_are_charged_at_the_team_and_both_see_its_standing(api, admin, priced):
    team = make_team(api, admin, monthly_token_quota=100_000, monthly_budget_micros=5_000_000)
    _, first = member(api, admin, team, "one@example.com")
    _, second = member(api, admin, team, "two@example.com")
    used = [body(chat(api, key))["usage"] for key in (first, second, first)]
    tokens = sum(u["total_tokens"] for u in used)
    cost = sum(Price(**PRICE).cost(u["prompt_tokens"], u["completion_tokens"]) for u in used)

    standing = body(api.call("GET", "/v1/usage", key=second))["team"]
    assert standing == {"team_id": team["team_id"], "tokens_used": tokens, "token_quota": 100_000,
                        "tokens_reserved": 0, "cost_micros": cost, "budget_micros": 5_000_000, "micros_reserved": 0,
                        "requests": 3}
    shown = body(api.call("GET", f"/admin/v1/teams/{team['team_id']}", key=admin))
    assert shown["usage"] == standing and shown["currency"] == "USD"
    assert sorted(m["email"] for m in shown["members"]) == ["one@example.com", "two@example.com"]


def test_a_spent_team_budget_refuses_every_member_naming_the_team(api, admin, priced):
    team = make_team(api, admin, monthly_budget_micros=100)  # one chat's worst case (about 90) fits, not two
    _, first = member(api, admin, team, "spender@example.com")
    _, second = member(api, admin, team, "other@example.com")
    assert chat(api, first, max_tokens=5)["statusCode"] == 200
    refused = chat(api, second, max_tokens=5)
    error = body(refused)["error"]
    assert (refused["statusCode"], error["code"], error["param"]) == (429, "budget_exceeded", "team"), error
    assert team["team_id"] in error["message"] and int(header(refused, "Retry-After")) > 60
    assert header(refused, "x-should-retry") == "false"
    assert body(api.call("GET", "/v1/usage", key=second))["requests"] == 0  # refused: nothing charged


def test_a_team_quota_refuses_naming_the_team_and_a_user_outside_it_is_not_held_to_it(api, admin):
    team = make_team(api, admin, monthly_token_quota=30)
    _, inside = member(api, admin, team, "inside@example.com")
    outside = api.register("outside@example.com")["api_key"]
    refused = chat(api, inside, max_tokens=50)  # needs more than the team has, whatever the user has
    assert (refused["statusCode"], body(refused)["error"]["code"], body(refused)["error"]["param"]) == (
        429, "quota_exceeded", "team")
    assert chat(api, outside, max_tokens=50)["statusCode"] == 200


def test_a_teams_models_bind_its_members_and_a_change_holds_at_once(api, admin):
    team = make_team(api, admin, allowed_models=["tiny"])
    _, key = member(api, admin, team, "models@example.com")
    refused = chat(api, key)
    assert (refused["statusCode"], body(refused)["error"]["code"]) == (403, "model_not_allowed")
    changed = api.call("PATCH", f"/admin/v1/teams/{team['team_id']}", key=admin, body={"allowed_models": None})
    assert changed["statusCode"] == 200 and body(changed)["allowed_models"] is None
    reset_instance_state()  # another instance: what the version check does within a second
    assert chat(api, key)["statusCode"] == 200


def test_membership_is_one_team_at_a_time_and_every_change_is_audited(api, admin):
    first, second = make_team(api, admin), make_team(api, admin)
    user_id, _ = member(api, admin, first, "member@example.com")
    moved = api.call("POST", f"/admin/v1/teams/{second['team_id']}/members", key=admin, body={"user_id": user_id})
    assert (moved["statusCode"], body(moved)["error"]["code"]) == (409, "conflict")
    removed = api.call("DELETE", f"/admin/v1/teams/{first['team_id']}/members/{user_id}", key=admin)
    assert removed["statusCode"] == 200 and body(removed)["team_id"] is None
    again = api.call("DELETE", f"/admin/v1/teams/{first['team_id']}/members/{user_id}", key=admin)
    assert (again["statusCode"], body(again)["error"]["code"]) == (404, "user_not_found")

    actions = [entry["action"] for entry in body(api.call("GET", "/admin/v1/audit", key=admin))["data"]]
    assert {"create_team", "add_team_member", "remove_team_member"} <= set(actions)


def test_bad_team_requests_name_the_field(api, admin, database):
    for request, field in [({"name": ""}, "name"), ({"name": "x", "monthly_budget_micros": -1}, "monthly_budget_micros"),
                           ({"name": "x", "monthly_token_quota": 1.5}, "monthly_token_quota"),
                           ({"name": "x", "allowed_models": []}, "allowed_models"), ({"name": "x", "extra": 1}, "extra")]:
        refused = api.call("POST", "/admin/v1/teams", key=admin, body=request)
        assert refused["statusCode"] == 400 and body(refused)["error"]["param"].startswith(field), (request, refused)
    team = make_team(api, admin)
    empty = api.call("PATCH", f"/admin/v1/teams/{team['team_id']}", key=admin, body={})
    assert empty["statusCode"] == 400
    missing = api.call("GET", "/admin/v1/teams/team_000000000000000000000000", key=admin)
    assert (missing["statusCode"], body(missing)["error"]["code"]) == (404, "team_not_found")
    viewer = create_admin_key("auditor", "viewer", store=MongoAccountStore(database), now=utc_now())[1]
    assert api.call("POST", "/admin/v1/teams", key=viewer, body={"name": "no"})["statusCode"] == 403
    listed = body(api.call("GET", "/admin/v1/teams", key=viewer))
    assert [t["team_id"] for t in listed["data"]] == [team["team_id"]]


def test_a_service_account_is_a_team_member_with_a_key_and_no_person(api, admin):
    team = make_team(api, admin, monthly_token_quota=100_000)
    made = api.call("POST", f"/admin/v1/teams/{team['team_id']}/service-accounts", key=admin,
                    body={"name": "search-backend"})
    assert made["statusCode"] == 201, made
    account = body(made)
    assert account["api_key"].startswith("igk_") and account["team_id"] == team["team_id"]
    answered = body(chat(api, account["api_key"]))["usage"]["total_tokens"]
    assert body(api.call("GET", "/v1/usage", key=account["api_key"]))["team"]["tokens_used"] == answered
    own = api.call("POST", "/v1/keys", key=account["api_key"], body={"name": "second"})
    assert own["statusCode"] == 201  # it manages its keys as any user does

    shown = body(api.call("GET", f"/admin/v1/teams/{team['team_id']}", key=admin))
    assert shown["members"] == [{"user_id": account["user_id"], "email": None, "kind": "service",
                                 "name": "search-backend"}]
    user = body(api.call("GET", f"/admin/v1/users/{account['user_id']}", key=admin))
    assert (user["kind"], user["name"], user["email"]) == ("service", "search-backend", None)
    audited = body(api.call("GET", "/admin/v1/audit", key=admin))["data"][0]
    assert (audited["action"], audited["subject"]["id"]) == ("create_service_account", account["user_id"])
    assert "api_key" not in str(audited) and account["api_key"] not in str(audited)
    missing = api.call("POST", "/admin/v1/teams/team_000000000000000000000000/service-accounts", key=admin,
                       body={"name": "x"})
    assert (missing["statusCode"], body(missing)["error"]["code"]) == (404, "team_not_found")


def test_operators_break_a_month_down_by_team_user_key_and_model_in_json_and_csv(api, admin, priced):
    team = make_team(api, admin)
    member_id, member_key = member(api, admin, team, "breakdown@example.com")
    loner = api.register("loner@example.com")
    spent = {key: body(chat(api, key))["usage"] for key in (member_key, member_key, loner["api_key"])}
    member_tokens = 2 * spent[member_key]["total_tokens"]

    by_team = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": "team"}))
    assert by_team["by"] == "team"
    assert [(s["id"], s["tokens"], s["requests"]) for s in by_team["breakdown"]] == [(team["team_id"], member_tokens, 2)]
    assert by_team["users"] == 2  # the team's month is not a user's
    by_user = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": "user"}))["breakdown"]
    assert {s["id"]: s["requests"] for s in by_user} == {member_id: 2, loner["user_id"]: 1}
    by_key = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": "key"}))["breakdown"]
    assert {s["id"]: s["requests"] for s in by_key} == {loner["key_id"]: 1, **{
        s["id"]: 2 for s in by_key if s["id"] != loner["key_id"]}} and len(by_key) == 2
    by_model = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": "model"}))
    (model,) = by_model["breakdown"]
    assert (model["id"], model["requests"], model["cost_micros"]) == ("smollm2:135m", 3, by_model["cost_micros"])

    csv = api.call("GET", "/admin/v1/usage", key=admin, query={"by": "user", "format": "csv"})
    assert csv["statusCode"] == 200 and header(csv, "Content-Type").startswith("text/csv")
    lines = csv["body"].split("\r\n")
    assert lines[0] == "period,user,tokens,requests,cost_micros,currency" and len(lines) == 4 and lines[-1] == ""
    refused = api.call("GET", "/admin/v1/usage", key=admin, query={"format": "csv"})
    assert (refused["statusCode"], body(refused)["error"]["param"]) == (400, "format")


def test_operators_break_a_range_of_days_down_as_the_month_and_a_bad_range_names_its_field(api, admin, priced):
    team = make_team(api, admin)
    _, member_key = member(api, admin, team, "days@example.com")
    loner = api.register("days-loner@example.com")
    for key in (member_key, member_key, loner["api_key"]):
        assert chat(api, key)["statusCode"] == 200
    today = datetime.now(UTC).date()
    days = {"start": (today - timedelta(days=40)).isoformat(), "end": today.isoformat()}  # two months, or three
    for by in ("team", "user", "key", "model"):
        month = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": by}))
        ranged = body(api.call("GET", "/admin/v1/usage", key=admin, query={"by": by, **days}))
        assert ranged["breakdown"] == month["breakdown"] and ranged["by"] == by, by
        assert (ranged["start"], ranged["end"]) == (days["start"], days["end"])
    before = {"by": "user", "start": "2020-01-01", "end": "2020-01-31"}
    assert body(api.call("GET", "/admin/v1/usage", key=admin, query=before))["breakdown"] == []
    csv = api.call("GET", "/admin/v1/usage", key=admin, query={"by": "model", "format": "csv", **days})
    assert csv["body"].split("\r\n")[1].startswith(f"{days['start']}..{days['end']},smollm2:135m,")

    for query, field in (({"by": "user", "start": days["start"]}, "end"), (dict(days), "by"),
                         ({"by": "user", "start": "2026-02-01", "end": "2026-01-01"}, "end"),
                         ({"by": "user", "period": "2026-01", **days}, "period"),
                         ({"by": "user", "start": "2026-13-01", "end": "2026-13-02"}, "start")):
        refused = api.call("GET", "/admin/v1/usage", key=admin, query=query)
        assert (refused["statusCode"], body(refused)["error"]["param"]) == (400, field), (query, body(refused))
    future = (today + timedelta(days=2)).isoformat()
    refused = api.call("GET", "/admin/v1/usage", key=admin, query={"by": "user", "start": future, "end": future})
    assert (refused["statusCode"], body(refused)["error"]["param"]) == (400, "start")


def test_a_teams_quota_for_one_model_refuses_that_model_alone(api, admin):
    team = make_team(api, admin, model_quotas={"smollm2:135m": 120})
    assert team["model_quotas"] == {"smollm2:135m": 120}
    _, key = member(api, admin, team, "permodel@example.com")
    refused = chat(api, key, max_tokens=5)
    assert refused["statusCode"] == 200  # about 90 held, about 40 charged
    charged = body(refused)["usage"]["total_tokens"]
    for _ in range(4):  # each capped to what is left, until too little is
        if refused["statusCode"] != 200:
            break
        refused = chat(api, key, max_tokens=5)
        charged += body(refused)["usage"]["total_tokens"] if refused["statusCode"] == 200 else 0
    assert charged <= 120, "no overspend"
    error = body(refused)["error"]
    assert (refused["statusCode"], error["code"], error["param"]) == (429, "model_quota_exceeded", "model"), error
    assert "smollm2:135m" in error["message"] and int(header(refused, "Retry-After")) > 60
    assert chat(api, key, model="tiny:latest", max_tokens=5)["statusCode"] == 200  # no quota of its own

    cleared = api.call("PATCH", f"/admin/v1/teams/{team['team_id']}", key=admin, body={"model_quotas": None})
    assert body(cleared)["model_quotas"] is None
    reset_instance_state()
    assert chat(api, key, max_tokens=5)["statusCode"] == 200
