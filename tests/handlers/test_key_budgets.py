"""A key's own monthly budget: its chats are held and charged at the key's month too, and refused
with 429 budget_exceeded naming the key once it is spent; a rotation's successor and any key made
with it spend the same month, so a key cannot buy itself a new budget. Operators set or clear it."""

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


def chat(api, key: str) -> dict:
    return api.call("POST", "/v1/chat/completions", key=key, body={
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "a budgeted hello"}], "max_tokens": 5})


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

    refused = chat(api, made["api_key"])  # about 45 charged of 150, and 90 held at worst: the next cannot fit
    for _ in range(3):  # however the model's counts fall, the budget runs out within a few chats
        if refused["statusCode"] != 200:
            break
        refused = chat(api, made["api_key"])
    error = body(refused)["error"]
    assert (refused["statusCode"], error["code"], error["param"]) == (429, "budget_exceeded", "key"), error
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
