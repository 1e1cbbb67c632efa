"""The admin API through its function, fed API Gateway's events: only admin keys, viewers
read only, every change applied everywhere and audited, bad input refused clearly."""

from __future__ import annotations

import pytest

from infergate.domain.administration import create_admin_key
from infergate.domain.periods import period_of, utc_now
from infergate.stores.accounts import MongoAccountStore
from tests.handlers.conftest import after_a_check_interval, body, header


@pytest.fixture
def admin_key(database) -> str:
    return create_admin_key("ops", "admin", store=MongoAccountStore(database), now=utc_now())[1]


@pytest.fixture
def viewer_key(database) -> str:
    return create_admin_key("auditor", "viewer", store=MongoAccountStore(database), now=utc_now())[1]


def chat(api, key: str) -> dict:
    return api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 3})


def test_only_admin_keys_open_the_admin_api_and_admin_keys_open_nothing_else(api, admin_key):
    user = api.register()
    refused = api.call("GET", "/admin/v1/users", key=user["api_key"])
    assert refused["statusCode"] == 403 and body(refused)["error"]["code"] == "forbidden"
    assert api.call("GET", "/admin/v1/plans", key=admin_key)["statusCode"] == 200
    wrong_place = chat(api, admin_key)
    assert wrong_place["statusCode"] == 403 and body(wrong_place)["error"]["code"] == "forbidden"


def test_users_are_listed_and_searched_a_page_at_a_time(api, admin_key):
    for name in ("ann", "anna", "bob"):
        api.register(f"{name}@example.com")
    first = body(api.call("GET", "/admin/v1/users", key=admin_key, query={"email": "ann", "limit": "1"}))
    second = body(api.call("GET", "/admin/v1/users", key=admin_key,
                           query={"email": "ann", "limit": "1", "cursor": first["next_cursor"]}))
    assert sorted(u["email"] for u in first["data"] + second["data"]) == ["ann@example.com", "anna@example.com"]
    assert second["next_cursor"] is None
    assert body(api.call("GET", "/admin/v1/users", key=admin_key, query={"plan": "pro"}))["data"] == []
    for bad in ({"limit": "0"}, {"limit": "101"}, {"cursor": "!!"}, {"colour": "red"}):
        refused = api.call("GET", "/admin/v1/users", key=admin_key, query=bad)
        assert refused["statusCode"] == 400 and body(refused)["error"]["code"] == "invalid_request", bad


def test_one_user_comes_with_their_keys_and_this_months_usage(api, admin_key):
    user = api.register()
    assert chat(api, user["api_key"])["statusCode"] == 200
    shown = body(api.call("GET", f"/admin/v1/users/{user['user_id']}", key=admin_key))
    assert (shown["email"], shown["plan"], shown["status"]) == ("ada@example.com", "free", "active")
    assert [k["key_id"] for k in shown["keys"]] == [user["key_id"]] and shown["keys"][0]["last_used_at"]
    assert shown["usage"]["requests"] == 1 and shown["usage"]["tokens_used"] > 0
    missing = api.call("GET", "/admin/v1/users/usr_nobody", key=admin_key)
    assert missing["statusCode"] == 404 and body(missing)["error"]["code"] == "user_not_found"


def test_a_plan_change_overrides_and_a_grant_reach_the_users_next_requests(api, admin_key):
    user = api.register()
    changed = api.call("PATCH", f"/admin/v1/users/{user['user_id']}", key=admin_key,
                       body={"plan": "pro", "overrides": {"rate_limit_rpm": 7}})
    assert changed["statusCode"] == 200 and body(changed)["overrides"] == {"rate_limit_rpm": 7}
    granted = api.call("POST", f"/admin/v1/users/{user['user_id']}/grants", key=admin_key, body={"tokens": 1234})
    assert granted["statusCode"] == 201 and body(granted)["grants"] == {period_of(utc_now()): 1234}
    after_a_check_interval()
    usage = api.call("GET", "/v1/usage", key=user["api_key"])
    assert body(usage)["token_quota"] == 5_000_000 + 1234
    assert header(usage, "X-RateLimit-Limit") == "7"


def test_a_suspended_user_gets_403_everywhere_until_reactivated(api, admin_key):
    user = api.register()
    assert api.call("PATCH", f"/admin/v1/users/{user['user_id']}", key=admin_key,
                    body={"status": "suspended"})["statusCode"] == 200
    after_a_check_interval()
    for method, path in (("POST", "/v1/chat"), ("GET", "/v1/usage"), ("GET", "/v1/keys"), ("GET", "/v1/models")):
        refused = api.call(method, path, key=user["api_key"], body={"prompt": "hi"} if method == "POST" else None)
        assert refused["statusCode"] == 403 and body(refused)["error"]["code"] == "account_suspended", path
    api.call("PATCH", f"/admin/v1/users/{user['user_id']}", key=admin_key, body={"status": "active"})
    after_a_check_interval()
    assert chat(api, user["api_key"])["statusCode"] == 200


def test_any_key_can_be_revoked_and_every_change_is_audited(api, admin_key):
    user = api.register()
    revoked = api.call("DELETE", f"/admin/v1/keys/{user['key_id']}", key=admin_key)
    assert revoked["statusCode"] == 200 and body(revoked) == {"key_id": user["key_id"], "status": "revoked"}
    api.call("POST", f"/admin/v1/users/{user['user_id']}/grants", key=admin_key, body={"tokens": 10})
    after_a_check_interval()
    assert api.authorize("GET", "/v1/usage", {"x-api-key": user["api_key"]})["context"]["errorCode"] == "invalid_api_key"

    page = body(api.call("GET", "/admin/v1/audit", key=admin_key, query={"limit": "1"}))
    older = body(api.call("GET", "/admin/v1/audit", key=admin_key, query={"cursor": page["next_cursor"]}))
    grant, revocation = page["data"][0], older["data"][0]
    assert grant["action"] == "grant_tokens" and grant["actor"].startswith("ops (adm_")
    assert grant["before"]["grants"] == {} and list(grant["after"]["grants"].values()) == [10]
    assert revocation["action"] == "revoke_key" and revocation["subject"] == {"type": "key", "id": user["key_id"]}
    assert revocation["before"]["revoked_at"] is None and revocation["after"]["revoked_at"]
    assert "key_hash" not in str(revocation)


def test_the_audit_log_filters_by_actor_subject_and_action_a_page_at_a_time(api, admin_key):
    first, second = api.register("first-audited@example.com"), api.register("second-audited@example.com")
    for user in (first, second, first):
        api.call("POST", f"/admin/v1/users/{user['user_id']}/grants", key=admin_key, body={"tokens": 10})
    api.call("DELETE", f"/admin/v1/keys/{first['key_id']}", key=admin_key)

    def entries(**only: str) -> list[tuple[str, str]]:
        page = body(api.call("GET", "/admin/v1/audit", key=admin_key, query={"limit": "1", **only}))
        found = [(entry["action"], entry["subject"]["id"]) for entry in page["data"]]
        while page["next_cursor"]:
            page = body(api.call("GET", "/admin/v1/audit", key=admin_key, query={"cursor": page["next_cursor"],
                                                                                 "limit": "1", **only}))
            found += [(entry["action"], entry["subject"]["id"]) for entry in page["data"]]
        return found

    assert entries(subject=first["user_id"]) == [("grant_tokens", first["user_id"])] * 2
    assert entries(action="revoke_key") == [("revoke_key", first["key_id"])]
    assert entries(action="grant_tokens", subject=second["user_id"]) == [("grant_tokens", second["user_id"])]
    assert len(entries(actor="ops (adm_")) == 4 and entries(actor="someone else") == []
    refused = api.call("GET", "/admin/v1/audit", key=admin_key, query={"action": "Drop Table"})
    assert refused["statusCode"] == 400 and body(refused)["error"]["param"] == "action"


def test_viewers_read_everything_and_change_nothing(api, viewer_key):
    user = api.register()
    for path in ("/admin/v1/users", f"/admin/v1/users/{user['user_id']}", "/admin/v1/usage", "/admin/v1/plans",
                 "/admin/v1/audit"):
        assert api.call("GET", path, key=viewer_key)["statusCode"] == 200, path
    for method, path, payload in (("PATCH", f"/admin/v1/users/{user['user_id']}", {"plan": "pro"}),
                                  ("POST", f"/admin/v1/users/{user['user_id']}/grants", {"tokens": 5}),
                                  ("DELETE", f"/admin/v1/keys/{user['key_id']}", None)):
        refused = api.call(method, path, key=viewer_key, body=payload)
        assert refused["statusCode"] == 403 and body(refused)["error"]["code"] == "forbidden", path


def test_usage_across_users_totals_the_month_and_names_the_heaviest(api, admin_key):
    light, heavy = api.register("light@example.com"), api.register("heavy@example.com")
    chat(api, light["api_key"])
    for _ in range(3):
        chat(api, heavy["api_key"])
    summary = body(api.call("GET", "/admin/v1/usage", key=admin_key, query={"top": "1"}))
    assert (summary["users"], summary["requests"]) == (2, 4)
    assert [t["user_id"] for t in summary["top"]] == [heavy["user_id"]]
    assert summary["tokens_used"] > summary["top"][0]["tokens"] > 0
    future = api.call("GET", "/admin/v1/usage", key=admin_key, query={"period": "2999-01"})
    assert future["statusCode"] == 400


def test_plans_are_listed_with_the_default_marked(api, admin_key):
    plans = {plan["name"]: plan for plan in body(api.call("GET", "/admin/v1/plans", key=admin_key))["data"]}
    assert plans["free"]["default"] and not plans["pro"]["default"]
    assert plans["free"]["max_api_keys"] == 10


@pytest.mark.parametrize("change", [{"plan": "gold"}, {"overrides": {"colour": 1}}, {"overrides": {"rate_limit_rpm": -1}},
                                    {"overrides": {"max_output_tokens": 5000}}, {"overrides": {"rate_limit_tpm": 0}},
                                    {"status": "banned"}, {}, {"plan": "pro", "extra": True}])
def test_bad_changes_are_refused_with_a_reason(api, admin_key, change):
    user = api.register()
    refused = api.call("PATCH", f"/admin/v1/users/{user['user_id']}", key=admin_key, body=change)
    assert refused["statusCode"] == 400 and body(refused)["error"]["code"] == "invalid_request"
    assert body(refused)["error"]["message"]


def test_a_request_in_flight_when_its_user_is_suspended_is_charged_once(api, admin_key, database, monkeypatch):
    import threading

    from tests.support import services
    from tests.support.accounting import ledger_totals
    from tests.support.functions import reset_instance_state

    user = api.register()
    with services.model_server("--token-delay", "0.1") as slow_model:
        monkeypatch.setenv("OLLAMA_URL", slow_model)
        reset_instance_state()
        answered: dict = {}
        request = threading.Thread(target=lambda: answered.update(response=chat(api, user["api_key"])))
        request.start()
        services.wait_until_the_model_is_asked(slow_model)
        suspended = api.call("PATCH", f"/admin/v1/users/{user['user_id']}", key=admin_key, body={"status": "suspended"})
        assert suspended["statusCode"] == 200
        request.join(60)
    assert answered["response"]["statusCode"] == 200  # admitted before the suspension, it finishes
    used = body(answered["response"])["usage"]["total_tokens"]
    assert ledger_totals(database, user["user_id"], period_of(utc_now())) == (used, used, 1)
    after_a_check_interval()
    assert chat(api, user["api_key"])["statusCode"] == 403


def test_admin_keys_are_made_listed_and_revoked_through_the_api_audited(api, admin_key, viewer_key):
    made = api.call("POST", "/admin/v1/admin-keys", key=admin_key, body={"name": "on-call", "role": "viewer"})
    assert made["statusCode"] == 201, body(made)
    issued = body(made)
    assert issued["api_key"].startswith("iga_") and (issued["role"], issued["status"]) == ("viewer", "active")
    assert api.call("GET", "/admin/v1/plans", key=issued["api_key"])["statusCode"] == 200

    listed = body(api.call("GET", "/admin/v1/admin-keys", key=admin_key))["data"]
    assert {k["name"] for k in listed} == {"ops", "auditor", "on-call"} and not any("api_key" in k for k in listed)

    revoked = api.call("DELETE", f"/admin/v1/admin-keys/{issued['key_id']}", key=admin_key)
    assert revoked["statusCode"] == 200 and body(revoked)["status"] == "revoked"
    after_a_check_interval()
    refused = api.call("GET", "/admin/v1/plans", key=issued["api_key"], expect_allowed=False)
    assert refused["statusCode"] == 401, "revoked everywhere within a second, as a user's key is"

    trail = [(entry["action"], entry["subject"]) for entry in body(api.call("GET", "/admin/v1/audit", key=admin_key))["data"]]
    subject = {"type": "admin_key", "id": issued["key_id"]}
    assert ("create_admin_key", subject) in trail and ("revoke_admin_key", subject) in trail
    entries = body(api.call("GET", "/admin/v1/audit", key=admin_key))["data"]
    assert all("key_hash" not in str(entry) for entry in entries), "the audit log never shows a key's hash"


def test_only_the_admin_role_touches_admin_keys(api, admin_key, viewer_key):
    for method, path, payload in (("GET", "/admin/v1/admin-keys", None),
                                  ("POST", "/admin/v1/admin-keys", {"name": "sneaky", "role": "admin"}),
                                  ("DELETE", "/admin/v1/admin-keys/adm_0123456789abcdef01234567", None)):
        refused = api.call(method, path, key=viewer_key, **({"body": payload} if payload else {}))
        assert refused["statusCode"] == 403 and body(refused)["error"]["code"] == "forbidden", (method, path)
    missing = api.call("DELETE", "/admin/v1/admin-keys/adm_nobody", key=admin_key)
    assert missing["statusCode"] == 404 and body(missing)["error"]["code"] == "key_not_found"
    bad = api.call("POST", "/admin/v1/admin-keys", key=admin_key, body={"name": "x\u202e", "role": "root"})
    assert bad["statusCode"] == 400
