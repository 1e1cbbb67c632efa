"""Property-based tests of the whole API against the OpenAPI document it serves (GET /openapi.json), with
schemathesis, over HTTP through one `make run` gateway.

Every operation gets requests generated from its documented parameters and body, valid and invalid (the
document's examples first), sent with a registered user's key, or an operator's admin key on the admin API;
every answer must be documented: no 500, no status the operation does not list, and a body, content type and
headers that fit what the document says of that status. Limits are raised out of the way, so that what answers
is the request itself and not the traffic the test makes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.paths import ROOT

DOCUMENT = ROOT / "layers" / "common" / "infergate" / "openapi.json"
MAX_EXAMPLES = 25  # per operation and phase: the whole module takes well under a minute on two cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
PLENTY = "1000000000"
LIMITS_OUT_OF_THE_WAY = {
    "RATE_LIMIT_RPM": PLENTY, "RATE_LIMIT_TPM": PLENTY, "REGISTER_RATE_LIMIT_PER_HOUR": PLENTY,
    "MAX_CONCURRENT_REQUESTS": "10000", "AUTH_FAILURES_PER_MINUTE": PLENTY, "DEFAULT_MONTHLY_TOKEN_QUOTA": PLENTY,
}


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("schema", **LIMITS_OUT_OF_THE_WAY)


def register(gateway) -> dict:
    response = httpx.post(f"{gateway.url}/v1/register", json={"email": f"schema-{uuid.uuid4().hex[:8]}@example.com"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def user(gateway) -> dict:
    """The user whose key every request of a user's route carries."""
    return register(gateway)


@pytest.fixture(scope="module")
def spare_keys(gateway, user) -> list[str]:
    """Keys of the user's besides the one the requests carry: routes that take a key_id revoke and rotate these."""
    made = [httpx.post(f"{gateway.url}/v1/keys", headers={"x-api-key": user["api_key"]}, json={"name": f"spare {n}"})
            for n in range(2)]
    assert all(response.status_code == 201 for response in made), [response.text for response in made]
    return [response.json()["key_id"] for response in made]


@pytest.fixture(scope="module")
def admin_key(gateway, mongo_uri) -> str:
    from infergate.domain.administration import create_admin_key
    from infergate.stores.accounts import MongoAccountStore
    from infergate.stores.mongo import connect

    client = connect(mongo_uri)
    try:
        store = MongoAccountStore(client[gateway.database_name])
        return create_admin_key("schemathesis", "admin", store=store, now=datetime.now(UTC))[1]
    finally:
        client.close()


@pytest.fixture(scope="module")
def api_schema(gateway, user, spare_keys, admin_key):
    subject = register(gateway)  # the user the admin API's requests look at and change
    config = schemathesis.Config.from_dict({
        "base-url": gateway.url,
        "request-timeout": 60,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        # Methods a route does not declare are asked too, those API Gateway has (it has no TRACE or QUERY).
        "phases": {"stateful": {"enabled": False},
                   "coverage": {"unexpected-methods": ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]}},
        "auth": {"auto-signup": False,
                 "openapi": {"ApiKey": {"api_key": user["api_key"]}, "AdminApiKey": {"api_key": admin_key}}},
        # Half the time a path names something that exists, so that its success is asked for too.
        "dictionaries": {"models": {"values": ["smollm2:135m", "tiny:latest"]},
                         "keys": {"values": [*spare_keys, subject["key_id"]]},
                         "users": {"values": [subject["user_id"]]}},
        "parameters": {"path.model": {"dictionary": "models", "probability": 0.5},
                       "path.key_id": {"dictionary": "keys", "probability": 0.5},
                       "path.user_id": {"dictionary": "users", "probability": 0.5}},
    })
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_answer_is_documented(case):
    case.call_and_validate(checks=CHECKS)


def test_the_document_is_served_without_a_key(gateway):
    """GET /openapi.json (schemathesis leaves out the operation it loaded the document from): the committed file,
    byte for byte."""
    response = httpx.get(f"{gateway.url}/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    assert response.content == DOCUMENT.read_bytes()
