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


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
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
