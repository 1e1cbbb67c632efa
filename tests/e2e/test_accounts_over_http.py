"""Keys, the admin API and its command line, and single sign-on, over HTTP through `make run`
with two instances of every function, requests in a row going to each in turn."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.identity import AUDIENCE, ISSUER, IdentityProvider
from tests.support.paths import ROOT
from tests.support.spreading import answers_asked_after

# What every change promises: it holds on every instance within this.
WITHIN_SECONDS = 1.0
CLI = ROOT / ".venv" / "bin" / "infergate"


@pytest.fixture(scope="module")
def provider():
    started = IdentityProvider().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def gateway(gateway_of, provider):
    return gateway_of("accounts", DEVKIT_INSTANCES="2", JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE,
                      JWT_JWKS_URL=provider.jwks_url, JWT_ALLOWED_PLANS="pro")


@pytest.fixture(scope="module")
def http(gateway):
    with gateway.client() as client:
        yield client


def register(http, email: str) -> dict:
    response = http.post("/v1/register", json={"email": email})
    assert response.status_code == 201, response.text
    return response.json()


def chat(http, credential: str, *, bearer: bool = False):
    headers = {"Authorization": f"Bearer {credential}"} if bearer else {"x-api-key": credential}
    return http.post("/v1/chat", json={"prompt": "hello there", "max_tokens": 5}, headers=headers)


def make_admin_key(gateway, name: str, role: str = "admin") -> str:
    """`make admin-key`, against the MongoDB `make run` started (found in its data folder)."""
    made = subprocess.run(["make", "-s", "admin-key", f"NAME={name}", f"ROLE={role}"], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **gateway.environment}, timeout=120)
    assert made.returncode == 0, made.stderr
    return next(word for word in made.stdout.split() if word.startswith("iga_"))


def cli(gateway, admin_key: str | None, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "INFERGATE_URL": gateway.url}
    if admin_key:
        environment["INFERGATE_ADMIN_KEY"] = admin_key
    return subprocess.run([str(CLI), *arguments], text=True, capture_output=True, env=environment, timeout=60)


def holds_everywhere_within_a_second(check, *, instances: int = 2) -> None:
    """Traffic goes on while a change spreads; every answer asked for a second or more after
    the change (on each of the instances in turn) has it."""
    later = answers_asked_after(WITHIN_SECONDS, check, at_least=2 * instances)
    assert all(later), later


def test_a_users_keys_walk_create_rotate_revoke(http):
    account = register(http, "keys@example.com")
    own = {"x-api-key": account["api_key"]}
    created = http.post("/v1/keys", json={"name": "ci"}, headers=own)
    assert created.status_code == 201 and created.json()["api_key"].startswith("igk_")
    spare = created.json()

    rotated = http.post(f"/v1/keys/{account['key_id']}/rotate", json={"grace_seconds": 3600}, headers=own)
    assert rotated.status_code == 201
    successor = rotated.json()
    assert chat(http, account["api_key"]).status_code == 200  # within its grace
    assert chat(http, successor["api_key"]).status_code == 200
    listed = {k["key_id"]: k["status"] for k in http.get("/v1/keys", headers=own).json()["data"]}
    assert listed == {account["key_id"]: "rotating", spare["key_id"]: "active", successor["key_id"]: "active"}

    # The rotating key may no longer change a key that outlives it: its successor does from here.
    assert http.delete(f"/v1/keys/{spare['key_id']}", headers=own).status_code == 403
    own = {"x-api-key": successor["api_key"]}
    assert http.delete(f"/v1/keys/{spare['key_id']}", headers=own).json()["status"] == "revoked"
    holds_everywhere_within_a_second(lambda: chat(http, spare["api_key"]).status_code == 401)
    refused = chat(http, spare["api_key"])
    assert refused.json()["error"]["code"] == "invalid_api_key"

    too_long = http.post(f"/v1/keys/{successor['key_id']}/rotate", json={"grace_seconds": 8 * 86400}, headers=own)
    assert too_long.status_code == 400 and "7 days" in too_long.json()["error"]["message"]
    stranger = register(http, "stranger@example.com")
    assert http.delete(f"/v1/keys/{stranger['key_id']}", headers=own).status_code == 404


def test_operators_work_through_the_command_line(gateway, http):
    admin = make_admin_key(gateway, "ops")
    viewer = make_admin_key(gateway, "auditor", "viewer")
    user = register(http, "customer@example.com")
    assert chat(http, user["api_key"]).status_code == 200

    listed = cli(gateway, admin, "users", "list", "--email", "customer")
    assert listed.returncode == 0 and user["user_id"] in listed.stdout and "customer@example.com" in listed.stdout
    shown = json.loads(cli(gateway, admin, "--json", "users", "show", user["user_id"]).stdout)
    assert shown["usage"]["requests"] == 1 and shown["keys"][0]["key_id"] == user["key_id"]

    assert cli(gateway, admin, "users", "set-plan", user["user_id"], "pro").returncode == 0
    assert cli(gateway, admin, "users", "grant", user["user_id"], "500").returncode == 0
    holds_everywhere_within_a_second(
        # Asked over and over: a 429 of the plan's old rate while the change spreads is no answer either way.
        lambda: http.get("/v1/usage", headers={"x-api-key": user["api_key"]}).json().get("token_quota") == 5_000_500)

    assert cli(gateway, admin, "users", "suspend", user["user_id"]).returncode == 0
    holds_everywhere_within_a_second(lambda: chat(http, user["api_key"]).status_code == 403)
    assert chat(http, user["api_key"]).json()["error"]["code"] == "account_suspended"
    assert cli(gateway, admin, "users", "reactivate", user["user_id"]).returncode == 0
    holds_everywhere_within_a_second(lambda: chat(http, user["api_key"]).status_code == 200)

    assert cli(gateway, admin, "keys", "revoke", user["key_id"]).returncode == 0
    holds_everywhere_within_a_second(lambda: chat(http, user["api_key"]).status_code == 401)

    top = cli(gateway, viewer, "usage", "top", "--top", "5")
    assert top.returncode == 0 and user["user_id"] in top.stdout
    audit = json.loads(cli(gateway, viewer, "--json", "audit", "--limit", "50").stdout)["data"]
    by_ops = [entry for entry in audit if entry["actor"].startswith("ops (adm_")]
    assert [entry["action"] for entry in by_ops] == ["revoke_key", "reactivate", "suspend", "grant_tokens", "change_user"]
    assert by_ops[-1]["before"]["plan"] == "free" and by_ops[-1]["after"]["plan"] == "pro"
    theirs = json.loads(cli(gateway, viewer, "--json", "audit", "--subject", user["user_id"], "--actor", "ops (",
                            "--action", "suspend").stdout)["data"]
    assert [(entry["action"], entry["subject"]["id"]) for entry in theirs] == [("suspend", user["user_id"])]


def test_operators_run_teams_through_the_command_line(gateway, http):
    admin = make_admin_key(gateway, "team-ops")
    user = register(http, "teammate@example.com")
    # Asked over and over below: the pro plan's rate keeps a 429 out of the answers.
    assert cli(gateway, admin, "users", "set-plan", user["user_id"], "pro").returncode == 0
    made = cli(gateway, admin, "--json", "teams", "create", "--name", "ml", "--quota", "1000000", "--budget-micros",
               "5000000", "--models", "smollm2:135m,tiny")
    assert made.returncode == 0, made.stderr
    team = json.loads(made.stdout)
    assert (team["monthly_token_quota"], team["monthly_budget_micros"], team["allowed_models"]) == (
        1_000_000, 5_000_000, ["smollm2:135m", "tiny"])
    assert cli(gateway, admin, "teams", "add-member", team["team_id"], user["user_id"]).returncode == 0
    holds_everywhere_within_a_second(
        lambda: (http.get("/v1/usage", headers={"x-api-key": user["api_key"]}).json().get("team") or {}).get(
            "team_id") == team["team_id"])
    assert chat(http, user["api_key"]).status_code == 200

    cleared = json.loads(cli(gateway, admin, "--json", "teams", "set", team["team_id"], "--quota", "none").stdout)
    assert cleared["monthly_token_quota"] is None and cleared["monthly_budget_micros"] == 5_000_000
    shown = cli(gateway, admin, "teams", "show", team["team_id"])
    assert shown.returncode == 0 and user["user_id"] in shown.stdout and "1 requests" in shown.stdout
    assert team["team_id"] in cli(gateway, admin, "teams", "list").stdout
    backend = cli(gateway, admin, "teams", "add-service-account", team["team_id"], "--name", "search-backend")
    assert backend.returncode == 0 and "igk_" in backend.stdout and "search-backend" in backend.stdout
    exported = cli(gateway, admin, "usage", "export", "--by", "team")
    assert exported.returncode == 0
    assert exported.stdout.splitlines()[0] == "period,team,tokens,requests,cost_micros,currency"
    assert f",{team['team_id']}," in exported.stdout
    assert cli(gateway, admin, "teams", "remove-member", team["team_id"], user["user_id"]).returncode == 0
    again = cli(gateway, admin, "teams", "remove-member", team["team_id"], user["user_id"])
    assert again.returncode == 3 and "user_not_found" in again.stderr


def test_the_command_line_says_what_went_wrong_and_exits_accordingly(gateway, http):
    admin = make_admin_key(gateway, "ops2")
    viewer = make_admin_key(gateway, "reader", "viewer")
    user = register(http, "exits@example.com")
    cases = [
        (cli(gateway, admin, "users", "show", "usr_000000000000000000000000"), 3, "user_not_found"),
        (cli(gateway, viewer, "users", "suspend", user["user_id"]), 4, "forbidden"),
        (cli(gateway, user["api_key"], "users", "list"), 4, "forbidden"),
        (cli(gateway, admin, "users", "set-plan", user["user_id"], "gold"), 1, "invalid_request"),
        (cli(gateway, None, "audit"), 4, "missing_api_key"),
    ]
    for done, code, said in cases:
        assert (done.returncode, said in done.stderr) == (code, True), done.stderr
    unreachable = subprocess.run([str(CLI), "--url", "http://127.0.0.1:9", "--key", admin, "audit"], text=True,
                                 capture_output=True, timeout=60)
    assert unreachable.returncode == 5 and "could not be reached" in unreachable.stderr
    nowhere = subprocess.run([str(CLI), "audit"], text=True, capture_output=True, timeout=60,
                             env={name: value for name, value in os.environ.items() if not name.startswith("INFERGATE")})
    assert nowhere.returncode == 2


def test_a_sign_in_token_is_a_user_with_quota_limits_and_usage(http, provider):
    token = provider.token("sso-user", email="sso@example.com", infergate_plan="pro")
    answered = chat(http, token, bearer=True)
    assert answered.status_code == 200, answered.text
    assert answered.headers["X-RateLimit-Limit"] == "600"  # the pro plan the token named
    usage = http.get("/v1/usage", headers={"Authorization": f"Bearer {token}"}).json()
    assert usage["requests"] == 1 and usage["token_quota"] == 5_000_000
    rotated = provider.token("sso-user", key=provider.keys[1])
    assert http.get("/v1/usage", headers={"Authorization": f"Bearer {rotated}"}).json()["requests"] == 1


@pytest.mark.parametrize(("claims", "code"), [({"lifetime": -120}, "token_expired"), ({"aud": "other"}, "invalid_token"),
                                              ({"iss": "https://evil.example/"}, "invalid_token")])
def test_bad_sign_in_tokens_get_401_saying_why(http, provider, claims, code):
    refused = chat(http, provider.token("mallory", **claims), bearer=True)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == code


def test_plans_and_overrides_over_http(gateway, http):
    admin = make_admin_key(gateway, "ops3")
    user = register(http, "override@example.com")
    plans = http.get("/admin/v1/plans", headers={"x-api-key": admin}).json()["data"]
    assert {plan["name"] for plan in plans} >= {"free", "pro"}
    changed = http.patch(f"/admin/v1/users/{user['user_id']}", headers={"x-api-key": admin},
                         json={"overrides": {"rate_limit_rpm": 3}})
    assert changed.status_code == 200 and changed.json()["overrides"] == {"rate_limit_rpm": 3}
    holds_everywhere_within_a_second(
        lambda: http.get("/v1/usage", headers={"x-api-key": user["api_key"]}).headers.get("X-RateLimit-Limit") == "3")


def test_no_key_or_token_reaches_a_log_line(gateway, http, provider):
    secrets = [register(http, "secret@example.com")["api_key"], make_admin_key(gateway, "ops4"),
               provider.token("log-watcher")]
    chat(http, secrets[0])
    chat(http, secrets[2], bearer=True)
    http.get("/admin/v1/plans", headers={"x-api-key": secrets[1]})
    logged = gateway.output()
    assert "CloudWatchMetrics" in logged  # the functions' own output is here
    assert not [secret for secret in secrets if secret in logged or secret[4:20] in logged]


def test_admin_keys_are_managed_from_the_command_line_and_revoked_everywhere(gateway, http):
    admin = make_admin_key(gateway, "keeper")
    made = json.loads(cli(gateway, admin, "admin-keys", "create", "--name", "night shift", "--role", "viewer",
                          "--json").stdout)
    assert made["api_key"].startswith("iga_")
    listed = cli(gateway, admin, "admin-keys", "list")
    assert listed.returncode == 0 and "night shift" in listed.stdout and made["api_key"] not in listed.stdout
    assert cli(gateway, made["api_key"], "servers").returncode == 0
    assert cli(gateway, admin, "admin-keys", "revoke", made["key_id"]).returncode == 0
    holds_everywhere_within_a_second(lambda: http.get("/admin/v1/plans", headers={"x-api-key": made["api_key"]})
                                     .status_code == 401)
