import base64

from tests.handlers.conftest import body, header


def test_registering_returns_the_key_once_with_the_plan(api):
    response = api.call("POST", "/v1/register", body={"email": "Ada@Example.com"})
    assert response["statusCode"] == 201
    account = body(response)
    assert set(account) == {"user_id", "email", "api_key", "key_id", "plan", "monthly_token_quota"}
    assert account["email"] == "ada@example.com"
    assert account["api_key"].startswith("igk_")
    assert (account["plan"], account["monthly_token_quota"]) == ("free", 100000)
    assert header(response, "Content-Type") == "application/json"


def test_every_response_carries_the_callers_request_id_or_a_new_one(api):
    mine = api.call("POST", "/v1/register", body={"email": "a@example.com"}, headers={"X-Request-Id": "mine-1"})
    assert header(mine, "x-request-id") == "mine-1"
    theirs = api.call("POST", "/v1/register", body={"email": "b@example.com"})
    assert header(theirs, "x-request-id")


def test_a_second_registration_of_an_email_is_a_conflict(api):
    api.register("ada@example.com")
    response = api.call("POST", "/v1/register", body={"email": "ADA@example.com"})
    assert response["statusCode"] == 409
    assert body(response)["error"]["code"] == "email_already_registered"


def test_bad_bodies_are_400_with_a_json_error(api):
    for kwargs in ({"body": {"email": "nope"}}, {"raw_body": "{not json"}, {"raw_body": ""}, {"body": [1]},
                   {"body": {"email": "a@example.com", "admin": True}}, {"body": {}}):
        response = api.call("POST", "/v1/register", **kwargs)
        assert response["statusCode"] == 400, kwargs
        error = body(response)["error"]
        assert error["code"] == "invalid_request" and error["message"], kwargs


def test_a_body_sent_as_a_form_is_still_read_as_json(api):
    response = api.call("POST", "/v1/register", raw_body='{"email": "form@example.com"}',
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response["statusCode"] == 201



def test_a_base64_body_that_is_not_utf8_is_400(api):
    response = api.call("POST", "/v1/register", raw_body=base64.b64encode(b"\xff\xfe{").decode(), base64_encoded=True)
    assert response["statusCode"] == 400
    assert body(response)["error"]["message"] == "The request body must be UTF-8."


def test_a_base64_json_body_is_read(api):
    # sam local generate-event sends bodies base64-encoded.
    response = api.call("POST", "/v1/register", raw_body=base64.b64encode(b'{"email": "b64@example.com"}').decode(),
                        base64_encoded=True)
    assert response["statusCode"] == 201
