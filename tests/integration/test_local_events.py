"""The local API builds events of the shapes API Gateway sends (as sam local generate-event has them)."""

from __future__ import annotations

from devkit import events
from devkit.events import HttpRequest

from tests.support.lambda_events import generated

REQUEST = HttpRequest(
    method="POST", path="/v1/chat", query="a=1&a=2", headers=[("Host", "localhost"), ("X-Api-Key", "k"), ("Accept", "a"), ("Accept", "b")],
    body=b'{"prompt": "hi"}', source_ip="127.0.0.1",
)


def key_paths(value, prefix=""):
    if not isinstance(value, dict):
        return set()
    paths = set()
    for key, item in value.items():
        paths.add(prefix + key)
        paths |= key_paths(item, f"{prefix}{key}.")
    return paths


def test_the_proxy_event_has_every_field_of_api_gateways():
    ours = events.proxy_event(REQUEST, resource="/v1/chat", path_parameters={}, stage="prod", request_id="r1")
    theirs = generated("aws-proxy")
    # Fields whose values are empty here and maps in the sample (API Gateway sends null for none).
    expected = key_paths(theirs) - {p for p in key_paths(theirs) if p.startswith(("pathParameters.", "stageVariables.", "queryStringParameters.", "multiValueQueryStringParameters.", "headers.", "multiValueHeaders."))}
    assert expected <= key_paths(ours) | {"pathParameters", "stageVariables"}
    assert ours["multiValueHeaders"]["Accept"] == ["a", "b"] and ours["headers"]["Accept"] == "b"
    assert ours["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert ours["body"] == '{"prompt": "hi"}' and ours["isBase64Encoded"] is False
    assert ours["requestContext"]["path"] == "/prod/v1/chat"


def test_the_request_authorizer_event_has_every_field_of_api_gateways():
    ours = events.request_authorizer_event(REQUEST, resource="/v1/chat", path_parameters={}, stage="prod", request_id="r1")
    theirs = generated("request-authorizer")
    top_level = set(theirs) - {"headers", "queryStringParameters", "pathParameters", "stageVariables"}
    assert top_level <= set(ours)
    assert ours["type"] == "REQUEST"
    assert ours["methodArn"].endswith("/prod/POST/v1/chat")
    assert "body" not in ours
