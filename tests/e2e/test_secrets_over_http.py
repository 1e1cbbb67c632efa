"""A gateway whose store URLs are kept in Secrets Manager (MongoDB) and Parameter Store (Redis,
the metrics token), its plain settings pointing nowhere: it registers, chats and meters through
the kept ones, under `make run` and `make run-lambda`, asks for the kept token, and logs none."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.aws import secrets_service

TOKEN = "kept-scrape-token-7f3a"
NOWHERE = {"MONGODB_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500", "REDIS_URL": "redis://127.0.0.1:9/0"}


@pytest.fixture(scope="module")
def service():
    with secrets_service() as running:
        yield running


@pytest.fixture(scope="module", params=["run", "run-lambda"])
def gateway(request, gateway_of, service, mongo_uri, redis_url):
    # Each gateway its own names: a value read once per instance is never a value left by another.
    suffix = uuid.uuid4().hex[:8]
    kept = {"MONGODB_URI_SECRET": service.keep_secret(f"infergate/e2e/{suffix}/mongodb-uri", mongo_uri),
            "REDIS_URL_SECRET": service.keep_parameter(f"/infergate/e2e/{suffix}/redis-url", redis_url),
            "METRICS_TOKEN_SECRET": service.keep_parameter(f"/infergate/e2e/{suffix}/metrics-token", TOKEN)}
    running = gateway_of(f"kept-{request.param}", target=request.param, **NOWHERE, **kept, **service.environment)
    running.kept = (mongo_uri, redis_url, TOKEN)
    return running


def test_registers_chats_and_meters_through_the_stores_the_secrets_name(gateway):
    key = gateway.register()["api_key"]
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": key}, timeout=60) as http:
        chat = http.post("/v1/chat", json={"prompt": "Say hello.", "max_tokens": 8})
        assert chat.status_code == 200, chat.text
        usage = http.get("/v1/usage")
    assert usage.status_code == 200 and usage.json()["tokens_used"] == chat.json()["usage"]["total_tokens"] > 0


def test_metrics_want_the_kept_token(gateway):
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    answer = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["totalRequests"] >= 1


def test_no_log_line_holds_a_kept_value(gateway):
    output = gateway.output()
    assert output and all(value not in output for value in gateway.kept)
