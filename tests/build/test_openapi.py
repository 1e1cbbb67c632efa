"""The OpenAPI document: every route of template.yaml and nothing else, committed as generated, and valid
OpenAPI 3.1. No servers: these read files and run the generator in process."""

from __future__ import annotations

import json

import pytest
from devkit import openapi, template
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.support.paths import ROOT

DOCUMENT = ROOT / "layers" / "common" / "infergate" / "openapi.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def committed() -> dict:
    assert DOCUMENT.exists(), f"{DOCUMENT.relative_to(ROOT)} is missing: run `make openapi`"
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def template_routes() -> set[tuple[str, str]]:
    return {(route.method, route.path) for route in template.load(ROOT / "template.yaml").api.routes}


def document_routes(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_the_table_names_every_route_of_the_template_and_no_other():
    routes, table = template_routes(), set(openapi.OPERATIONS)
    assert not routes - table, f"routes of template.yaml missing from devkit/openapi.py's OPERATIONS: {routes - table}"
    assert not table - routes, f"OPERATIONS names routes template.yaml does not have: {table - routes}"


def test_the_document_has_every_route_of_the_template_and_no_other(committed):
    routes, documented = template_routes(), document_routes(committed)
    assert not routes - documented, f"routes missing from openapi.json: {routes - documented}; run `make openapi`"
    assert not documented - routes, f"openapi.json has routes template.yaml does not: {documented - routes}"


def test_the_committed_document_is_what_the_generator_makes_now():
    assert DOCUMENT.read_text(encoding="utf-8") == openapi.render(), (
        f"{DOCUMENT.relative_to(ROOT)} is out of date with devkit/openapi.py or the models: run `make openapi`")


def test_the_document_is_valid_openapi_3_1(committed):
    assert committed["openapi"].startswith("3.1.")
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in OpenAPIV31SpecValidator(committed).iter_errors()]
    assert not errors, "\n".join(errors[:20])


def test_every_operation_documents_its_success_errors_and_authentication(committed):
    responses = committed["components"]["responses"]
    for path, item in committed["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            statuses = set(operation["responses"])
            assert statuses & {"200", "201"}, label
            assert {"400", "413", "429", "500", "502"} <= statuses, label  # what API Gateway itself may answer
            protected = (method.upper(), path) not in PUBLIC
            # A route anyone may call has no requirement, or an empty one ({}) among its alternatives.
            assert ({} not in operation["security"] and operation["security"] != []) == protected, label
            if protected:
                assert {"401", "403", "503"} <= statuses, label
            for status, response in operation["responses"].items():
                response = responses[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response else response
                assert "x-request-id" in response["headers"], (label, status)
                if int(status) >= 400 and not (path == "/health/ready" and status == "503"):
                    schema = response["content"]["application/json"]["schema"]
                    if path.startswith("/v1/messages"):  # Anthropic's shape: its type says what, the description why
                        assert schema["allOf"] == [{"$ref": "#/components/schemas/AnthropicError"}], (label, status)
                        assert schema["properties"]["error"]["properties"]["type"]["const"], (label, status)
                        continue
                    assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorBody"}], (label, status)
                    assert schema["properties"]["error"]["properties"]["code"]["enum"], (label, status)


PUBLIC = {("GET", "/health"), ("GET", "/health/ready"), ("GET", "/metrics"), ("GET", "/openapi.json"),
          ("GET", "/console"), ("GET", "/console/assets/{asset}"), ("POST", "/v1/register")}


def test_streamed_chats_are_documented_as_server_sent_events(committed):
    content = committed["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    data = content["text/event-stream"]["schema"]["properties"]["data"]
    assert data["else"]["contentSchema"]["oneOf"] == [{"$ref": "#/components/schemas/ChatCompletionChunk"},
                                                      {"$ref": "#/components/schemas/ErrorBody"}]

    content = committed["paths"]["/v1/chat"]["post"]["responses"]["200"]["content"]
    events = content["text/event-stream"]["schema"]["oneOf"]
    assert [(event["properties"]["event"]["const"], event["properties"]["data"]["contentSchema"]["$ref"])
            for event in events] == [("delta", "#/components/schemas/ChatDelta"),
                                     ("done", "#/components/schemas/ChatResponse"),
                                     ("error", "#/components/schemas/ErrorBody")]


def test_request_and_response_schemas_are_the_handlers_models(committed):
    operations = {(method.upper(), path): operation for path, item in committed["paths"].items()
                  for method, operation in item.items()}
    schemas = committed["components"]["schemas"]
    for (method, path), row in openapi.OPERATIONS.items():
        operation = operations[(method, path)]
        if row.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas
            assert operation["requestBody"]["required"] is not row.body_optional
        if row.query is not None:
            assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == set(row.query.model_fields)
        if row.response is not None:
            ref = operation["responses"][str(row.status)]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{row.response.__name__}", (method, path)


def test_every_error_code_the_table_names_is_explained():
    named = {code for row in openapi.OPERATIONS.values() for code in (*row.errors, *row.not_found)}
    named |= {code for names in openapi.GATEWAY.values() for code in names} | set(openapi.AUTHORIZED)
    assert named <= set(openapi.MEANINGS), named - set(openapi.MEANINGS)
