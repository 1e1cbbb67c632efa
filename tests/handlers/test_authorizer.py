import pytest

from infergate.domain.keys import new_api_key


def test_a_valid_key_is_allowed_with_the_principal_in_context(api):
    account = api.register()
    for headers in ({"x-api-key": account["api_key"]}, {"Authorization": f"Bearer {account['api_key']}"}):
        policy = api.authorize("POST", "/v1/chat", headers)
        statement = policy["policyDocument"]["Statement"][0]
        assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
        assert policy["principalId"] == account["user_id"]
        assert policy["context"]["key_id"] == account["key_id"]
        assert policy["context"]["monthly_token_quota"] == 100000
        # API Gateway accepts only flat scalar context values.
        assert all(isinstance(v, (str, int, float, bool)) for v in policy["context"].values())


@pytest.mark.parametrize("key", ["valid", "unknown"])
def test_the_callers_request_id_reaches_api_gateways_access_log_through_the_context(api, key):
    presented = api.register()["api_key"] if key == "valid" else new_api_key()
    policy = api.authorize("GET", "/v1/usage", {"x-api-key": presented, "x-request-id": "trace-me-42"})
    assert policy["context"]["correlationId"] == "trace-me-42"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_api_key"),
        ({"x-api-key": "igk_nonsense"}, "invalid_api_key"),
        ({"x-api-key": new_api_key()}, "invalid_api_key"),
        ({"Authorization": "Bearer " + new_api_key()}, "invalid_api_key"),
    ],
)
def test_missing_or_unknown_keys_are_denied_with_a_reason(api, headers, code):
    api.register()
    policy = api.authorize("GET", "/v1/usage", headers)
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert policy["context"]["errorCode"] == code
    assert policy["context"]["errorMessage"]


def test_another_authorization_scheme_is_an_invalid_key_naming_the_accepted_forms(api):
    policy = api.authorize("GET", "/v1/usage", {"Authorization": "Basic dXNlcjpwYXNz"})
    assert policy["context"]["errorCode"] == "invalid_api_key"
    assert "x-api-key: <key>" in policy["context"]["errorMessage"]
    assert "Authorization: Bearer <key>" in policy["context"]["errorMessage"]


def test_failed_authentications_are_limited_per_address_but_never_lock_out_a_valid_key(api, monkeypatch):
    from tests.handlers.conftest import body, header
    from tests.support.functions import reset_instance_state

    monkeypatch.setenv("AUTH_FAILURES_PER_MINUTE", "5")
    reset_instance_state()
    known = api.register()["api_key"]
    assert api.call("GET", "/v1/usage", key=known)["statusCode"] == 200  # now remembered
    unused = api.register("grace@example.com")["api_key"]  # valid, and never seen by the authorizer

    guesses = [api.authorize("GET", "/v1/usage", {"x-api-key": new_api_key()}) for _ in range(5)]
    assert [policy["context"]["errorCode"] for policy in guesses] == ["invalid_api_key"] * 5

    throttled = [api.call("GET", "/v1/usage", key=new_api_key()) for _ in range(20)]
    assert {response["statusCode"] for response in throttled} == {429}
    error = body(throttled[0])["error"]
    assert error["code"] == "too_many_failed_authentications"
    assert 1 <= int(header(throttled[0], "Retry-After")) <= 60
    missing = api.authorize("GET", "/v1/usage", {})
    assert missing["context"]["errorCode"] == "too_many_failed_authentications", "every refused kind alike"

    # The address is limited, not the keys: a valid key works from it, known or not (a shared NAT).
    assert api.call("GET", "/v1/usage", key=known)["statusCode"] == 200
    assert api.call("GET", "/v1/usage", key=unused)["statusCode"] == 200


def test_a_refusal_is_logged_in_one_access_line_with_api_gateways_request_id(api, monkeypatch):
    import io
    import json

    from infergate.observability import logger

    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    api.authorize("GET", "/v1/usage", {"x-api-key": new_api_key(), "x-request-id": "callers-own-id"})
    [refused] = [line for line in map(json.loads, lines.getvalue().splitlines()) if line["message"] == "request"]
    assert refused["correlation_id"] == "callers-own-id"
    assert refused["api_request_id"] and refused["api_request_id"] != "callers-own-id"
    assert (refused["route"], refused["method"], refused["status"], refused["outcome"]) == (
        "/v1/usage", "GET", 401, "invalid_api_key")


def test_a_key_that_cannot_be_checked_for_want_of_a_store_is_a_503_not_a_crashed_authorizer(api, monkeypatch):
    from devkit.backends import free_port

    from tests.handlers.conftest import body, header
    from tests.support.functions import reset_instance_state

    key = api.register()["api_key"]
    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    reset_instance_state()
    response = api.call("GET", "/v1/usage", key=key)
    assert response["statusCode"] == 503 and body(response)["error"]["code"] == "service_unavailable"
    assert header(response, "Retry-After") == "1"
