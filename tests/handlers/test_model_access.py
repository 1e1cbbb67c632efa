"""Which models a caller may use: a plan's `allowed_models` (PLANS) and a key's (POST /v1/keys).
Any other model is refused with 403 model_not_allowed naming it, before anything is counted."""

from __future__ import annotations

import json

import pytest

from tests.handlers.conftest import body
from tests.support.functions import reset_instance_state


def chat(api, key: str, model: str) -> dict:
    request = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    return api.call("POST", "/v1/chat/completions", key=key, body=request)


def refused_for_the_model(response: dict, model: str) -> bool:
    error = body(response)["error"]
    return (response["statusCode"], error["code"], error["param"]) == (403, "model_not_allowed", "model") and \
        model in error["message"]


@pytest.fixture
def small_plan(monkeypatch, environment):
    monkeypatch.setenv("PLANS", json.dumps({"free": {"allowed_models": ["tiny"]}}))
    reset_instance_state()


def test_a_plan_allows_only_its_models_and_a_refusal_costs_nothing(api, small_plan):
    key = api.register("small@example.com")["api_key"]
    assert refused_for_the_model(chat(api, key, "smollm2:135m"), "smollm2:135m")
    default = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi", "max_tokens": 3})
    assert refused_for_the_model(default, "smollm2:135m")  # the default model is a model too
    assert chat(api, key, "tiny:latest")["statusCode"] == 200
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert usage["requests"] == 1
    anthropic = api.call("POST", "/v1/messages", key=key, body={
        "model": "smollm2:135m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    assert anthropic["statusCode"] == 403 and body(anthropic)["error"]["type"] == "permission_error"


def test_a_key_allows_only_its_models_and_its_successors_and_keys_it_makes_no_more(api):
    user_key = api.register("keys@example.com")["api_key"]
    made = api.call("POST", "/v1/keys", key=user_key, body={"name": "ci", "allowed_models": ["smollm2:135m"]})
    assert made["statusCode"] == 201 and body(made)["allowed_models"] == ["smollm2:135m"]
    ci = body(made)["api_key"]
    assert chat(api, ci, "smollm2:135m")["statusCode"] == 200
    assert refused_for_the_model(chat(api, ci, "tiny"), "tiny")
    assert chat(api, user_key, "tiny:latest")["statusCode"] == 200  # the user's other keys are not narrowed

    wider = api.call("POST", "/v1/keys", key=ci, body={"allowed_models": ["tiny"]})
    assert wider["statusCode"] == 403 and body(wider)["error"]["param"] == "allowed_models"
    inherited = body(api.call("POST", "/v1/keys", key=ci, body={"name": "ci-2"}))
    assert inherited["allowed_models"] == ["smollm2:135m"]
    rotated = body(api.call("POST", f"/v1/keys/{body(made)['key_id']}/rotate", key=user_key, body={}))
    assert rotated["allowed_models"] == ["smollm2:135m"]
    assert refused_for_the_model(chat(api, rotated["api_key"], "tiny"), "tiny")


def test_a_list_of_models_is_checked(api):
    key = api.register("lists@example.com")["api_key"]
    for bad in ([], ["a,b"], [""], "smollm2"):
        refused = api.call("POST", "/v1/keys", key=key, body={"allowed_models": bad})
        assert refused["statusCode"] == 400 and body(refused)["error"]["param"].startswith("allowed_models"), bad


def test_a_plans_quota_of_one_model_holds_for_each_of_its_users(api, monkeypatch, environment):
    monkeypatch.setenv("PLANS", json.dumps({"free": {"model_quotas": {"smollm2:135m": 120}}}))
    reset_instance_state()
    key = api.register("quota-of-one@example.com")["api_key"]
    answered, charged = chat(api, key, "smollm2:135m"), 0
    for _ in range(5):  # each capped to what is left, until too little is
        if answered["statusCode"] != 200:
            break
        charged += body(answered)["usage"]["total_tokens"]
        answered = chat(api, key, "smollm2:135m")
    error = body(answered)["error"]
    assert (answered["statusCode"], error["code"], error["param"]) == (429, "model_quota_exceeded", "model"), error
    assert "Your plan's" in error["message"] and charged <= 120
    assert chat(api, key, "tiny:latest")["statusCode"] == 200  # no quota of its own
    other = api.register("another-user@example.com")["api_key"]
    assert chat(api, other, "smollm2:135m")["statusCode"] == 200  # each user's own quota of the model
