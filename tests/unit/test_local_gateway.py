"""The local API Gateway's rules that do not need a running function."""

from pathlib import Path

from devkit import template
from devkit.gateway import _allows, _render

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:execute-api:us-east-1:123456789012:infergate/prod/POST/v1/chat"


def statement(effect, resource):
    return {"Action": "execute-api:Invoke", "Effect": effect, "Resource": [resource]}


def test_policies_are_evaluated_like_iam():
    assert _allows({"Statement": [statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:infergate/prod/*/*")]}, ARN)
    assert not _allows({"Statement": [statement("Allow", "arn:aws:execute-api:us-east-1:123456789012:infergate/prod/GET/*")]}, ARN)
    assert not _allows({"Statement": [statement("Allow", "*"), statement("Deny", ARN)]}, ARN)
    assert not _allows({"Statement": []}, ARN)


def test_templates_substitute_context_variables():
    rendered = _render('{"code": "$context.authorizer.errorCode", "id": "$context.requestId", "m": $context.error.messageString}',
                       {"authorizer": {"errorCode": "invalid_api_key"}, "requestId": "r1", "error": {"messageString": '"no"'}})
    assert rendered == '{"code": "invalid_api_key", "id": "r1", "m": "no"}'


def test_the_template_yields_every_route_with_its_authorizer():
    spec = template.load(ROOT / "template.yaml")
    routes = {(r.method, r.path): (r.function, r.authorizer) for r in spec.api.routes}
    assert routes == {
        ("GET", "/health"): ("OpsFunction", None),
        ("GET", "/metrics"): ("OpsFunction", None),
        ("POST", "/v1/register"): ("RegisterFunction", None),
        ("POST", "/v1/chat"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/usage"): ("UsageFunction", "ApiKeyAuthorizer"),
    }
    assert spec.api.authorizers["ApiKeyAuthorizer"].function == "AuthorizerFunction"
    assert spec.api.authorizers["ApiKeyAuthorizer"].payload_type == "REQUEST"
    assert spec.api.gateway_responses["ACCESS_DENIED"].status_code == 401


def test_parameters_reach_function_environments():
    spec = template.load(ROOT / "template.yaml", {"RateLimitRpm": "7"})
    chat = spec.functions["ChatFunction"]
    assert chat.environment["RATE_LIMIT_RPM"] == "7"
    assert chat.environment["POWERTOOLS_SERVICE_NAME"] == "infergate-chat"
    assert chat.timeout == 29
    assert [layer.name for layer in chat.layers] == ["common", "dependencies"]


def test_path_parameters_match():
    route = template.Route("GET", "/v1/items/{id}/{rest+}", "F", None)
    assert route.match("GET", "/v1/items/7/a/b") == {"id": "7", "rest": "a/b"}
    assert route.match("POST", "/v1/items/7/a") is None
