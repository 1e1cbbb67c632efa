"""A key's own limits: a monthly budget, whose chats are held and charged at the key's month too,
and refused with 429 budget_exceeded naming the key once it is spent; and per-model quotas,
refused with 429 model_quota_exceeded naming the model. A rotation's successor and any key made
with it spend the same months, so a key cannot buy itself a new budget or quota. Operators set
or clear them."""

from __future__ import annotations

import json

import pytest

from infergate.domain.administration import create_admin_key
from infergate.domain.periods import utc_now
from infergate.stores.accounts import MongoAccountStore
from tests.handlers.conftest import body
from tests.support.functions import reset_instance_state

PRICE = {"input_per_million_micros": 1_000_000, "output_per_million_micros": 2_000_000}  # 1 and 2 micros a token


@pytest.fixture
def priced(monkeypatch, environment):
    monkeypatch.setenv("MODEL_PRICES", json.dumps({"smollm2:135m": PRICE}))
    reset_instance_state()


def chat(api, key: str, model: str = "smollm2:135m") -> dict:
    return api.call("POST", "/v1/chat/completions", key=key, body={
        "model": model, "messages": [{"role": "user", "content": "a budgeted hello"}], "max_tokens": 5})


def refused_for(response: dict, code: str, param: str) -> bool:
    error = body(response).get("error") or {}
    return (response["statusCode"], error.get("code"), error.get("param")) == (429, code, param)


def chat_until_refused(api, key: str, model: str = "smollm2:135m") -> tuple[dict, int]:
    """Chats until one is refused (within a few: the limits here fit about two), and the tokens charged."""
    charged = 0
    for _ in range(6):
        answered = chat(api, key, model)
        if answered["statusCode"] != 200:
            return answered, charged
        charged += body(answered)["usage"]["total_tokens"]
    raise AssertionError("never refused")


def test_a_keys_budget_holds_for_it_its_successor_and_keys_it_makes(api, priced):
    user_key = api.register("budget@example.com")["api_key"]
    made = body(api.call("POST", "/v1/keys", key=user_key, body={"name": "ci", "monthly_budget_micros": 150}))
    assert made["monthly_budget_micros"] == 150
    assert chat(api, made["api_key"])["statusCode"] == 200  # about 90 micros at worst, about 45 charged
    standing = body(api.call("GET", "/v1/usage", key=made["api_key"]))["key"]
    assert standing["budget_id"] == made["key_id"] and 0 < standing["cost_micros"] < 150

    child = body(api.call("POST", "/v1/keys", key=made["api_key"], body={"name": "ci-child"}))
    assert child["monthly_budget_micros"] == 150
    assert body(api.call("GET", "/v1/usage", key=child["api_key"]))["key"] == standing  # the same month
    wider = api.call("POST", "/v1/keys", key=made["api_key"], body={"monthly_budget_micros": 10**9})
    assert (wider["statusCode"], body(wider)["error"]["param"]) == (403, "monthly_budget_micros")

    refused, _ = chat_until_refused(api, made["api_key"])  # however the counts fall, within a few chats
    assert refused_for(refused, "budget_exceeded", "key"), body(refused)
    rotated = body(api.call("POST", f"/v1/keys/{made['key_id']}/rotate", key=user_key, body={}))
    again = chat(api, rotated["api_key"])
    assert (again["statusCode"], body(again)["error"]["code"]) == (429, "budget_exceeded")  # no fresh budget
    assert chat(api, user_key)["statusCode"] == 200  # the user's other keys spend no key's budget
    spent = body(api.call("GET", "/v1/usage", key=rotated["api_key"]))["key"]
    assert spent["cost_micros"] <= 150, "no overspend"


def test_operators_set_and_clear_a_keys_budget_and_models(api, priced, database):
    admin = create_admin_key("ops", "admin", store=MongoAccountStore(database), now=utc_now())[1]
    account = api.register("operated@example.com")
    changed = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin,
                       body={"monthly_budget_micros": 0, "allowed_models": ["smollm2:135m"]})
    assert changed["statusCode"] == 200, changed
    assert (body(changed)["monthly_budget_micros"], body(changed)["allowed_models"]) == (0, ["smollm2:135m"])
    reset_instance_state()  # another instance: what the version check does within a second
    refused = chat(api, account["api_key"])
    assert (refused["statusCode"], body(refused)["error"]["param"]) == (429, "key")
    cleared = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin,
                       body={"monthly_budget_micros": None})
    assert body(cleared)["monthly_budget_micros"] is None
    reset_instance_state()
    assert chat(api, account["api_key"])["statusCode"] == 200
    audit = body(api.call("GET", "/admin/v1/audit", key=admin))["data"]
    assert [entry["action"] for entry in audit[:2]] == ["change_key", "change_key"]
    missing = api.call("PATCH", "/admin/v1/keys/key_000000000000000000000000", key=admin,
                       body={"monthly_budget_micros": 1})
    assert (missing["statusCode"], body(missing)["error"]["code"]) == (404, "key_not_found")
    nothing = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin, body={})
    assert nothing["statusCode"] == 400


def test_a_keys_quota_of_one_model_holds_for_its_line_and_no_other_model_or_key(api):
    user_key = api.register("model-quota@example.com")["api_key"]
    made = body(api.call("POST", "/v1/keys", key=user_key, body={"model_quotas": {"smollm2:135m": 150}}))
    assert made["model_quotas"] == {"smollm2:135m": 150}
    refused, charged = chat_until_refused(api, made["api_key"])
    assert refused_for(refused, "model_quota_exceeded", "model"), body(refused)
    assert "Your key's" in body(refused)["error"]["message"] and 0 < charged <= 150
    assert chat(api, made["api_key"], "tiny:latest")["statusCode"] == 200  # no quota of its own
    assert chat(api, user_key)["statusCode"] == 200  # the user's other keys are not held to it

    child = body(api.call("POST", "/v1/keys", key=made["api_key"], body={"name": "child"}))
    rotated = body(api.call("POST", f"/v1/keys/{made['key_id']}/rotate", key=user_key, body={}))
    for key in (child, rotated):  # the same month of the model: no fresh quota
        assert key["model_quotas"] == {"smollm2:135m": 150}
        assert refused_for(chat(api, key["api_key"]), "model_quota_exceeded", "model")
    other = api.call("POST", "/v1/keys", key=made["api_key"], body={"model_quotas": {"tiny": 10}})
    assert (other["statusCode"], body(other)["error"]["param"]) == (403, "model_quotas")


def test_operators_set_and_clear_a_keys_model_quotas(api, database):
    admin = create_admin_key("ops", "admin", store=MongoAccountStore(database), now=utc_now())[1]
    account = api.register("operated-quotas@example.com")
    changed = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin,
                       body={"model_quotas": {"smollm2:135m": 0}})
    assert (changed["statusCode"], body(changed)["model_quotas"]) == (200, {"smollm2:135m": 0}), changed
    reset_instance_state()  # another instance: what the version check does within a second
    assert refused_for(chat(api, account["api_key"]), "model_quota_exceeded", "model")
    cleared = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin, body={"model_quotas": None})
    assert body(cleared)["model_quotas"] is None
    reset_instance_state()
    assert chat(api, account["api_key"])["statusCode"] == 200
    bad = api.call("PATCH", f"/admin/v1/keys/{account['key_id']}", key=admin, body={"model_quotas": {"a b": 1}})
    assert bad["statusCode"] == 400 and body(bad)["error"]["param"].startswith("model_quotas"), body(bad)
