"""Handlers invoked in-process with API Gateway's events, against real backends."""

from __future__ import annotations

import json
import time

import pytest
from devkit import template

from infergate.domain.authentication import VERSION_CHECK_SECONDS
from infergate.runtime import StreamedResponse
from tests.support import services
from tests.support.functions import LambdaContext, load_handler, reset_instance_state
from tests.support.lambda_events import authorizer_event, handler_context, proxy_event
from tests.support.paths import ROOT


@pytest.fixture
def environment(monkeypatch, database, redis_client, redis_url, mongo_uri, ollama_url):
    """Settings as template.yaml gives them, pointing at this test's backends."""
    values = {
        "MONGODB_URI": mongo_uri,
        "MONGODB_DB": database.name,
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": str(services.redis_is_cluster()).lower(),
        "OLLAMA_URL": ollama_url,
        "OLLAMA_MODEL": "smollm2:135m",
        "DEFAULT_MONTHLY_TOKEN_QUOTA": "100000",
        "RATE_LIMIT_RPM": "60",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "InferGate",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_instance_state()
    yield values
    reset_instance_state()


class Api:
    """Calls handlers the way API Gateway would, routes from template.yaml: the authorizer first
    on protected routes, then the route's function with the authorizer's context."""

    def __init__(self) -> None:
        spec = template.load(ROOT / "template.yaml")
        handlers: dict[str, object] = {}
        for name, function in spec.functions.items():
            source = f"{function.code_uri.name}/{function.handler.split('.')[0]}.py"
            handlers[name] = load_handler(source)
        self.authorizer = handlers["AuthorizerFunction"]
        self.routes = [(route, handlers[route.function]) for route in spec.api.routes]

    def handler(self, method: str, path: str):
        """The loaded function module that serves `method path`."""
        return next(handler for route, handler in self.routes if route.match(method, path) is not None)

    def authorize(self, method: str, path: str, headers: dict[str, str]) -> dict:
        return self.authorizer.lambda_handler(authorizer_event(method, path, headers=headers), LambdaContext())

    def call(self, method: str, path: str, **arguments) -> dict:
        """The response as its client reads it (a streamed one read to its end)."""
        return received(self.invoke(method, path, **arguments))

    def invoke(self, method: str, path: str, *, key: str | None = None, headers: dict[str, str] | None = None,
               expect_allowed: bool = True, **event_args) -> dict | StreamedResponse:
        """What the route's function returns: a proxy response, or a StreamedResponse not yet read."""
        headers = {**({"x-api-key": key} if key else {}), **(headers or {})}
        route, parameters, handler = next((route, found, handler) for route, handler in self.routes
                                          if (found := route.match(method, path)) is not None)
        authorizer = None
        if route.authorizer:
            policy = self.authorize(method, path, headers)
            allowed = policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
            if not allowed and not expect_allowed:
                return {"statusCode": 401, "policy": policy}
            assert allowed, policy
            authorizer = handler_context(policy)
        event = proxy_event(method, path, resource=route.path, path_parameters=parameters, headers=headers,
                            authorizer=authorizer, **event_args)
        result = handler.lambda_handler(event, LambdaContext())
        # API Gateway reads a streaming integration's answers as a prelude and a body, and no other's.
        assert isinstance(result, StreamedResponse) == route.streams, (route, result)
        return result

    def register(self, email: str = "ada@example.com") -> dict:
        response = self.call("POST", "/v1/register", body={"email": email})
        assert response["statusCode"] == 201, response
        return json.loads(response["body"])


@pytest.fixture
def faulty(api, monkeypatch, faulty_ollama_url):
    """Configures the API against the model server that misbehaves on cue, with `settings` besides
    (a module may have a `faulty` of its own)."""
    def configure(**settings: str) -> Api:
        monkeypatch.setenv("OLLAMA_URL", faulty_ollama_url)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        reset_instance_state()
        return api

    return configure


@pytest.fixture
def api(environment) -> Api:
    return Api()


def received(result: dict | StreamedResponse) -> dict:
    """What the function returned, as API Gateway reads it: a streamed response's prelude with its
    body read to the end (marked `streamed`)."""
    if isinstance(result, StreamedResponse):
        return {**result.prelude, "body": b"".join(result).decode(), "streamed": True}
    return result


def body(response: dict) -> dict:
    return json.loads(response["body"])


def header(response: dict, name: str) -> str | None:
    """A response header as API Gateway would send it (it merges both header maps)."""
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return values[-1]
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def after_a_check_interval() -> None:
    """Every authorizer instance reads the accounts version again after this: a guarantee of
    time itself, as the instances check at most every VERSION_CHECK_SECONDS."""
    time.sleep(VERSION_CHECK_SECONDS + 0.05)
