"""Credentials and logs: guessing keys is limited per address, never locking out a valid key; no
credential reaches a log line, whatever it is called; every line is JSON and carries the
ids that tie it to the caller and to API Gateway."""

from __future__ import annotations

import secrets

from infergate.domain.keys import new_api_key


def test_failed_authentications_are_limited_per_address(stack, http):
    known = stack.register(http)["api_key"]
    assert http.get("/v1/usage", headers={"x-api-key": known}).status_code == 200
    answers = [http.get("/v1/usage", headers={"x-api-key": new_api_key()}) for _ in range(15)]
    assert [a.status_code for a in answers[:10]] == [401] * 10  # AUTH_FAILURES_PER_MINUTE is 10
    assert {a.status_code for a in answers[10:]} == {429}
    limited = answers[-1]
    assert limited.json()["error"]["code"] == "too_many_failed_authentications"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert http.get("/v1/usage", headers={"x-api-key": known}).status_code == 200, "a key already known still works"
    with stack.client() as elsewhere:
        assert elsewhere.get("/v1/usage", headers={"x-api-key": new_api_key()}).status_code == 401, "per address"


def test_another_authorization_scheme_names_the_accepted_forms(http):
    response = http.get("/v1/usage", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer <key>" in response.json()["error"]["message"]


def test_no_credential_reaches_a_log_line_whatever_its_name(stack, http):
    secret = secrets.token_hex(12)
    key = stack.register(http)["api_key"]
    headers = {"x-api-key": key, "Proxy-Authorization": f"Basic {secret}", "api-key": secret,
               "X-Auth-Token": secret, "X-Amz-Security-Token": secret, "x-request-id": f"redaction-{secret[:4]}"}
    assert http.get("/v1/usage", params={"token": secret}, headers=headers).status_code == 200
    assert http.get("/v1/usage", params={"access_token": secret}, headers={"x-api-key": new_api_key()}).status_code == 401
    output = "\n".join(stack.log_lines())
    assert f"redaction-{secret[:4]}" in output, "the requests were logged (events are logged in this stack)"
    assert secret not in output and key not in output


def test_every_line_is_json_with_the_callers_id_and_api_gateways(stack, http):
    refused = http.get("/v1/usage", headers={"x-api-key": new_api_key(), "x-request-id": "find-me-in-the-log"})
    assert refused.status_code == 401
    assert [line for line in stack.log_lines() if not line.startswith("{")] == []
    refusal = next(line for line in stack.json_log()
                   if line.get("message") == "request" and line.get("correlation_id") == "find-me-in-the-log")
    assert refusal["api_request_id"], "API Gateway's own id, which its 401 carries"
    assert refusal["outcome"] == "invalid_api_key"


def test_metrics_can_be_kept_to_holders_of_its_token(http):
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = http.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
    assert scraped.status_code == 200 and scraped.json()["totalRequests"] > 0
