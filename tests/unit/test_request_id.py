from infergate.api.request_id import request_id_of


def event(headers=None):
    return {"headers": headers, "requestContext": {"requestId": "apigw-id"}}


def test_the_callers_id_is_kept():
    assert request_id_of(event({"X-Request-Id": "abc-123"})) == "abc-123"


def test_without_one_api_gateways_id_is_used():
    assert request_id_of(event(None)) == "apigw-id"
    assert request_id_of(event({"Accept": "*/*"})) == "apigw-id"


def test_an_id_unsafe_to_echo_or_log_is_replaced():
    assert request_id_of(event({"x-request-id": "bad\nid"})) == "apigw-id"
    assert request_id_of(event({"x-request-id": "x" * 129})) == "apigw-id"
