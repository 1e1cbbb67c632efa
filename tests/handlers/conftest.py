"""Handlers invoked in-process with API Gateway's events, against real backends."""

from __future__ import annotations

import json

import pytest

from tests.support.functions import LambdaContext, load_handler, reset_instance_state
from tests.support.lambda_events import authorizer_event, handler_context, proxy_event


@pytest.fixture
def environment(monkeypatch, database, redis_client, redis_url, mongo_uri, ollama_url):
    """Settings as template.yaml gives them, pointing at this test's backends."""
    values = {
        "MONGODB_URI": mongo_uri,
        "MONGODB_DB": database.name,
        "REDIS_URL": redis_url,
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
    """Calls handlers the way API Gateway would: authorizer first on protected routes."""

    def __init__(self) -> None:
        self.authorizer = load_handler("gateway/authorizer.py")
        self.functions = {
            ("POST", "/v1/register"): load_handler("auth/register.py"),
            ("GET", "/v1/usage"): load_handler("usage/usage.py"),
        }
        chat = load_handler("chat/chat.py")
        for route in (("POST", "/v1/chat"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
            self.functions[route] = chat
        ops = load_handler("gateway/ops.py")
        self.functions[("GET", "/health")] = ops
        self.functions[("GET", "/metrics")] = ops

    def authorize(self, method: str, path: str, headers: dict[str, str]) -> dict:
        return self.authorizer.lambda_handler(authorizer_event(method, path, headers=headers), LambdaContext())

    def call(self, method: str, path: str, *, key: str | None = None, headers: dict[str, str] | None = None, **event_args) -> dict:
        headers = {**({"x-api-key": key} if key else {}), **(headers or {})}
        authorizer = None
        if path not in ("/v1/register", "/health", "/metrics"):
            policy = self.authorize(method, path, headers)
            assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow", policy
            authorizer = handler_context(policy)
        event = proxy_event(method, path, headers=headers, authorizer=authorizer, **event_args)
        return self.functions[(method, path)].lambda_handler(event, LambdaContext())

    def register(self, email: str = "ada@example.com") -> dict:
        response = self.call("POST", "/v1/register", body={"email": email})
        assert response["statusCode"] == 201, response
        return json.loads(response["body"])


@pytest.fixture
def api(environment) -> Api:
    return Api()


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
