"""The local API Gateway's rules that do not need a running function."""

import json
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
        ("GET", "/health/ready"): ("OpsFunction", None),
        ("GET", "/metrics"): ("OpsFunction", None),
        ("GET", "/openapi.json"): ("OpsFunction", None),
        ("GET", "/console"): ("OpsFunction", None),
        ("GET", "/console/assets/{asset}"): ("OpsFunction", None),
        ("POST", "/v1/register"): ("RegisterFunction", None),
        ("POST", "/v1/chat"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/chat/completions"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/models"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/models/{model}"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/embeddings"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/completions"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/messages"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/messages/count_tokens"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/responses"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/responses/{response_id}"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("DELETE", "/v1/responses/{response_id}"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/responses/{response_id}/input_items"): ("ChatFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/usage"): ("UsageFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/keys"): ("KeysFunction", "ApiKeyAuthorizer"),
        ("GET", "/v1/keys"): ("KeysFunction", "ApiKeyAuthorizer"),
        ("DELETE", "/v1/keys/{key_id}"): ("KeysFunction", "ApiKeyAuthorizer"),
        ("POST", "/v1/keys/{key_id}/rotate"): ("KeysFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/users"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/users/{user_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("PATCH", "/admin/v1/users/{user_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("POST", "/admin/v1/users/{user_id}/grants"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("DELETE", "/admin/v1/keys/{key_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/admin-keys"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("POST", "/admin/v1/admin-keys"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("DELETE", "/admin/v1/admin-keys/{key_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/usage"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/plans"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/prices"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("PATCH", "/admin/v1/keys/{key_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/teams"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("POST", "/admin/v1/teams"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/teams/{team_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("PATCH", "/admin/v1/teams/{team_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("POST", "/admin/v1/teams/{team_id}/members"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("POST", "/admin/v1/teams/{team_id}/service-accounts"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("DELETE", "/admin/v1/teams/{team_id}/members/{user_id}"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/servers"): ("AdminFunction", "ApiKeyAuthorizer"),
        ("GET", "/admin/v1/audit"): ("AdminFunction", "ApiKeyAuthorizer"),
    }
    assert spec.api.authorizers["ApiKeyAuthorizer"].function == "AuthorizerFunction"
    assert spec.api.authorizers["ApiKeyAuthorizer"].payload_type == "REQUEST"
    assert spec.api.gateway_responses["ACCESS_DENIED"].status_code == 401


def test_parameters_reach_function_environments():
    spec = template.load(ROOT / "template.yaml", {"RateLimitRpm": "7", "ChatFunctionTimeout": "300"})
    chat = spec.functions["ChatFunction"]
    assert chat.environment["RATE_LIMIT_RPM"] == "7"
    assert chat.environment["POWERTOOLS_SERVICE_NAME"] == "infergate-chat"
    assert chat.timeout == 300
    assert [layer.name for layer in chat.layers] == ["common", "dependencies"]


def test_path_parameters_match():
    route = template.Route("GET", "/v1/items/{id}/{rest+}", "F", None)
    assert route.match("GET", "/v1/items/7/a/b") == {"id": "7", "rest": "a/b"}
    assert route.match("POST", "/v1/items/7/a") is None


class FakePool:
    """Stands in for a function: returns or raises what the test says."""

    def __init__(self, outcome, timeout=10):
        self.outcome = outcome
        self.spec = type("Spec", (), {"timeout": timeout})()
        self.events = []

    def invoke(self, event, *, timeout=None):
        self.events.append(event)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def gateway(authorizer_outcome, function_outcome, function_timeout=10):
    from devkit.gateway import LocalApiGateway

    spec = template.load(ROOT / "template.yaml")
    pools = {name: FakePool(function_outcome, function_timeout) for name in spec.functions}
    pools["AuthorizerFunction"] = FakePool(authorizer_outcome)
    return LocalApiGateway(spec.api, pools), pools


def request(path="/v1/usage", method="GET"):
    from devkit.events import HttpRequest

    return HttpRequest(method=method, path=path, query="", headers=[("x-api-key", "k")], body=b"", source_ip="127.0.0.1")


ALLOW = {"principalId": "usr_1", "policyDocument": {"Version": "2012-10-17", "Statement": [
    {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ["arn:aws:execute-api:*:*:*/prod/*/*"]}]},
    "context": {"user_id": "usr_1", "monthly_token_quota": 5, "flag": True}}


def test_an_allowed_request_reaches_the_function_with_the_context_stringified():
    api, pools = gateway(ALLOW, {"statusCode": 200, "body": "{}"})
    response = api.handle(request())
    assert response.status == 200
    authorizer = pools["UsageFunction"].events[0]["requestContext"]["authorizer"]
    assert authorizer["monthly_token_quota"] == "5" and authorizer["flag"] == "true" and authorizer["principalId"] == "usr_1"


def test_a_deny_becomes_the_templates_401_with_the_authorizers_reason():
    deny = {**ALLOW, "policyDocument": {"Statement": [{**ALLOW["policyDocument"]["Statement"][0], "Effect": "Deny"}]},
            "context": {"errorCode": "invalid_api_key", "errorMessage": "nope"}}
    api, _ = gateway(deny, None)
    response = api.handle(request())
    assert response.status == 401
    assert json.loads(response.body) == {"type": "error",  # OpenAI's shape and Anthropic's at once
        "error": {"message": "nope", "type": "authentication_error", "param": None, "code": "invalid_api_key"}}
    assert dict(response.headers)["x-request-id"]


def test_an_authorizer_that_fails_is_a_503_and_unauthorized_is_a_401():
    from devkit.functions import InvocationError

    api, _ = gateway(InvocationError({"errorMessage": "mongo down"}), None)
    failed = api.handle(request())
    assert failed.status == 503 and json.loads(failed.body)["error"]["code"] == "service_unavailable"
    api, _ = gateway(InvocationError({"errorMessage": "Unauthorized"}), None)
    assert api.handle(request()).status == 401


def test_a_crashing_function_is_502_and_one_past_29_s_is_504():
    from devkit.functions import InvocationError, InvocationTimeout

    api, _ = gateway(ALLOW, InvocationError({"errorMessage": "boom"}))
    crashed = api.handle(request())
    assert crashed.status == 502 and json.loads(crashed.body)["error"]["code"] == "gateway_error"
    api, _ = gateway(ALLOW, InvocationTimeout({"errorMessage": "slow"}), function_timeout=29)
    assert api.handle(request()).status == 504
    api, _ = gateway(ALLOW, {"not": "a proxy response"})
    assert api.handle(request()).status == 502


def test_unknown_routes_are_404_without_calling_anything():
    api, pools = gateway(ALLOW, None)
    response = api.handle(request("/v1/nothing"))
    assert response.status == 404 and json.loads(response.body)["error"]["code"] == "not_found"
    assert pools["AuthorizerFunction"].events == []


def test_path_parameters_are_percent_decoded_as_api_gateway_hands_them_over():
    from devkit.template import Route

    route = Route("GET", "/v1/models/{model}", "ChatFunction", None)
    assert route.match("GET", "/v1/models/smollm2%3A135m") == {"model": "smollm2:135m"}
