"""Prices (MODEL_PRICES): every chat costs its real counts at its model's (or alias's) price, in
whole micros; /v1/usage, the admin API's usage and its price list say so in CURRENCY."""

from __future__ import annotations

import json

import pytest

from infergate.domain.administration import create_admin_key
from infergate.domain.periods import utc_now
from infergate.domain.prices import Price
from infergate.stores.accounts import MongoAccountStore
from tests.handlers.conftest import body
from tests.support.functions import reset_instance_state

SMALL = {"input_per_million_micros": 150_000, "output_per_million_micros": 600_000}
ALIAS = {"input_per_million_micros": 2_000_000, "output_per_million_micros": 3_000_000}


@pytest.fixture
def priced(monkeypatch, environment):
    monkeypatch.setenv("MODEL_PRICES", json.dumps({"smollm2:135m": SMALL, "small": ALIAS}))
    monkeypatch.setenv("MODEL_ALIASES", json.dumps({"small": ["smollm2:135m"]}))
    monkeypatch.setenv("CURRENCY", "EUR")
    reset_instance_state()


def chat(api, key: str, model: str) -> dict:
    answered = api.call("POST", "/v1/chat/completions", key=key, body={
        "model": model, "messages": [{"role": "user", "content": "price me"}], "max_tokens": 7})
    assert answered["statusCode"] == 200, answered
    return body(answered)["usage"]


def test_a_chat_costs_its_counts_at_its_price_and_usage_sums_them(api, priced):
    key = api.register("priced@example.com")["api_key"]
    by_model, by_alias = chat(api, key, "smollm2:135m"), chat(api, key, "small")
    costs = [Price(**SMALL).cost(by_model["prompt_tokens"], by_model["completion_tokens"]),
             Price(**ALIAS).cost(by_alias["prompt_tokens"], by_alias["completion_tokens"])]
    assert costs[1] > 0

    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["cost_micros"], usage["currency"]) == (sum(costs), "EUR")
    assert usage["by_model"]["smollm2:135m"]["cost_micros"] == sum(costs)  # both answered by the model
    assert sum(day["cost_micros"] for day in usage["by_day"].values()) == sum(costs)


def test_operators_see_the_prices_and_the_months_cost(api, priced, database):
    admin = create_admin_key("ops", "viewer", store=MongoAccountStore(database), now=utc_now())[1]
    listed = body(api.call("GET", "/admin/v1/prices", key=admin))
    assert listed == {"currency": "EUR", "prices": {"smollm2:135m": SMALL, "small": ALIAS}}

    key = api.register("spender@example.com")["api_key"]
    spent = chat(api, key, "small")
    summary = body(api.call("GET", "/admin/v1/usage", key=admin))
    assert summary["cost_micros"] == Price(**ALIAS).cost(spent["prompt_tokens"], spent["completion_tokens"])
    assert summary["currency"] == "EUR" and summary["top"][0]["cost_micros"] == summary["cost_micros"]
