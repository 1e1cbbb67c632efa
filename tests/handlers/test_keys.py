"""A user's own keys through the keys function, fed API Gateway's events: create, list,
rotate, revoke; what each status means to the authorizer; bad input."""

from __future__ import annotations

import pytest

from tests.handlers.conftest import after_a_check_interval, body, header
from tests.support.functions import reset_instance_state


def chat(api, key: str) -> dict:
    return api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 3}, expect_allowed=False)


def refusal(api, key: str) -> str:
    return api.authorize("GET", "/v1/keys", {"x-api-key": key})["context"]["errorCode"]


def test_a_new_key_is_shown_once_works_and_is_listed_without_its_secret(api):
    account = api.register()
    created = api.call("POST", "/v1/keys", key=account["api_key"], body={"name": "ci runner", "expires_in_days": 30})
    assert created["statusCode"] == 201, created
    issued = body(created)
    assert issued["api_key"].startswith("igk_") and issued["prefix"] == issued["api_key"][:8]
    assert (issued["name"], issued["status"]) == ("ci runner", "active") and issued["expires_at"]
    assert header(created, "X-RateLimit-Limit") == "60"

    assert chat(api, issued["api_key"])["statusCode"] == 200
    listed = body(api.call("GET", "/v1/keys", key=account["api_key"]))["data"]
    assert [(k["key_id"], k["status"]) for k in listed] == [(account["key_id"], "active"), (issued["key_id"], "active")]
    assert all(k["last_used_at"] for k in listed)  # both have made requests by now
    assert not any("api_key" in k or "key_hash" in k for k in listed)


def test_a_key_name_that_would_hide_or_spoof_in_a_listing_is_refused(api):
    account = api.register()
    for name in ("rtl\u202egnp.exe", "zero\u200bwidth", "bell\x07", "tab\tname", "nbsp\u00a0name", "line\u2028two",
                 "private\ue000use", "replaced\ufffd"):
        refused = api.call("POST", "/v1/keys", key=account["api_key"], body={"name": name})
        assert refused["statusCode"] == 400 and body(refused)["error"]["param"] == "name", (repr(name), body(refused))
    for name in ("ci runner", "déploiement", "生产 key", "prod-eu_1 (read)"):
        assert api.call("POST", "/v1/keys", key=account["api_key"], body={"name": name})["statusCode"] == 201, name


def test_a_key_needs_no_body_and_refuses_fields_it_cannot_honour(api):
    account = api.register()
    assert api.call("POST", "/v1/keys", key=account["api_key"])["statusCode"] == 201
    for bad in ({"name": ""}, {"expires_in_days": 0}, {"expires_in_days": 3651}, {"scopes": ["chat"]}):
        refused = api.call("POST", "/v1/keys", key=account["api_key"], body=bad)
        assert refused["statusCode"] == 400 and body(refused)["error"]["code"] == "invalid_request", bad


def test_a_revoked_key_is_refused_on_every_instance(api):
    account = api.register()
    spare = body(api.call("POST", "/v1/keys", key=account["api_key"]))
    revoked = api.call("DELETE", f"/v1/keys/{spare['key_id']}", key=account["api_key"])
    assert revoked["statusCode"] == 200 and body(revoked)["status"] == "revoked"
    after_a_check_interval()
    assert refusal(api, spare["api_key"]) == "invalid_api_key"
    assert chat(api, account["api_key"])["statusCode"] == 200


def test_a_rotated_key_keeps_working_through_its_grace_and_its_successor_works(api):
    account = api.register()
    rotated = api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=account["api_key"], body={"grace_seconds": 600})
    assert rotated["statusCode"] == 201, rotated
    successor = body(rotated)
    assert successor["replaces"] == account["key_id"] and successor["api_key"] != account["api_key"]
    listed = {k["key_id"]: k["status"] for k in body(api.call("GET", "/v1/keys", key=successor["api_key"]))["data"]}
    assert listed == {account["key_id"]: "rotating", successor["key_id"]: "active"}
    assert chat(api, account["api_key"])["statusCode"] == 200
    again = api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=account["api_key"])
    assert again["statusCode"] == 409 and body(again)["error"]["code"] == "key_not_active"


def test_a_rotation_with_no_grace_ends_the_old_key_at_once(api):
    account = api.register()
    successor = body(api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=account["api_key"],
                              body={"grace_seconds": 0}))
    after_a_check_interval()
    assert refusal(api, account["api_key"]) == "api_key_expired"
    assert chat(api, successor["api_key"])["statusCode"] == 200


@pytest.mark.parametrize(("grace", "status"), [(7 * 86400 + 1, 400), (-1, 400)])
def test_grace_beyond_seven_days_or_below_zero_is_refused(api, grace, status):
    account = api.register()
    refused = api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=account["api_key"], body={"grace_seconds": grace})
    assert refused["statusCode"] == status and body(refused)["error"]["code"] == "invalid_request"


def test_another_users_key_or_no_such_key_is_404(api):
    alice, bob = api.register("alice@example.com"), api.register("bob@example.com")
    for method, path in (("DELETE", f"/v1/keys/{bob['key_id']}"), ("POST", f"/v1/keys/{bob['key_id']}/rotate"),
                         ("DELETE", "/v1/keys/key_000000000000000000000000"), ("DELETE", "/v1/keys/nonsense")):
        missing = api.call(method, path, key=alice["api_key"])
        assert missing["statusCode"] == 404 and body(missing)["error"]["code"] == "key_not_found", path
    assert chat(api, bob["api_key"])["statusCode"] == 200


def test_the_plan_caps_how_many_active_keys_a_user_holds(api, monkeypatch):
    from tests.support.functions import reset_instance_state

    monkeypatch.setenv("PLANS", '{"free": {"max_api_keys": 2}}')
    reset_instance_state()
    account = api.register()
    assert api.call("POST", "/v1/keys", key=account["api_key"])["statusCode"] == 201
    refused = api.call("POST", "/v1/keys", key=account["api_key"])
    assert refused["statusCode"] == 409 and body(refused)["error"]["code"] == "too_many_keys"


def test_keys_in_their_grace_period_count_against_the_plan(api, monkeypatch):
    monkeypatch.setenv("PLANS", '{"free": {"max_api_keys": 2}}')
    reset_instance_state()
    account = api.register()
    second = body(api.call("POST", "/v1/keys", key=account["api_key"]))
    rotated = api.call("POST", f"/v1/keys/{second['key_id']}/rotate", key=account["api_key"], body={"grace_seconds": 3600})
    assert rotated["statusCode"] == 409 and body(rotated)["error"]["code"] == "too_many_keys", body(rotated)
    # Without grace the old key stops at once: the successor takes its place.
    immediate = api.call("POST", f"/v1/keys/{second['key_id']}/rotate", key=account["api_key"], body={"grace_seconds": 0})
    assert immediate["statusCode"] == 201, body(immediate)
    assert api.call("POST", "/v1/keys", key=account["api_key"])["statusCode"] == 409


def test_a_key_that_stops_working_cannot_make_or_change_keys_that_outlive_it(api):
    account = api.register()
    lasting = account["api_key"]
    rotated = body(api.call("POST", f"/v1/keys/{account['key_id']}/rotate", key=lasting, body={"grace_seconds": 3600}))
    for leaked in (lasting, body(api.call("POST", "/v1/keys", key=rotated["api_key"], body={"expires_in_days": 1}))["api_key"]):
        made = api.call("POST", "/v1/keys", key=leaked, body={"name": "mine forever"})
        assert made["statusCode"] == 403 and body(made)["error"]["code"] == "forbidden", body(made)
        revoked = api.call("DELETE", f"/v1/keys/{rotated['key_id']}", key=leaked)
        assert revoked["statusCode"] == 403, body(revoked)
        again = api.call("POST", f"/v1/keys/{rotated['key_id']}/rotate", key=leaked, body={})
        assert again["statusCode"] == 403, body(again)
    # A key may always revoke itself, and a lasting key may change any key.
    short = body(api.call("POST", "/v1/keys", key=rotated["api_key"], body={"expires_in_days": 1}))
    assert api.call("DELETE", f"/v1/keys/{short['key_id']}", key=short["api_key"])["statusCode"] == 200
    assert api.call("DELETE", f"/v1/keys/{account['key_id']}", key=rotated["api_key"])["statusCode"] == 200
