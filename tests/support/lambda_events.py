"""API Gateway events as `sam local generate-event` produces them, adjusted per request."""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any


def _sam() -> str:
    beside_python = Path(sys.executable).with_name("sam")
    return str(beside_python) if beside_python.exists() else (shutil.which("sam") or "sam")


@functools.cache
def generated(kind: str) -> dict:
    """`sam local generate-event apigateway <kind>`: aws-proxy or request-authorizer."""
    output = subprocess.run(
        [_sam(), "local", "generate-event", "apigateway", kind], check=True, capture_output=True, text=True,
        env={"SAM_CLI_TELEMETRY": "0", "PATH": str(Path(sys.executable).parent)},
    ).stdout
    return json.loads(output)


def _with_headers(event: dict, headers: dict[str, str]) -> None:
    event["headers"] = dict(headers)
    event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}


def proxy_event(
    method: str, path: str, *, body: Any = None, raw_body: str | None = None, base64_encoded: bool = False,
    headers: dict[str, str] | None = None, authorizer: dict | None = None, query: dict[str, str] | None = None,
    resource: str | None = None, path_parameters: dict[str, str] | None = None,
) -> dict:
    event = copy.deepcopy(generated("aws-proxy"))
    request_id = str(uuid.uuid4())
    event.update(
        httpMethod=method, path=path, resource=resource or path, pathParameters=path_parameters or None,
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None, isBase64Encoded=base64_encoded,
        body=raw_body if raw_body is not None else (json.dumps(body) if body is not None else None),
    )
    _with_headers(event, {"Content-Type": "application/json", **(headers or {})})
    event["requestContext"].update(httpMethod=method, resourcePath=resource or path, path=f"/prod{path}",
                                   requestId=request_id)
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    return event


def authorizer_event(method: str, path: str, *, headers: dict[str, str] | None = None) -> dict:
    event = copy.deepcopy(generated("request-authorizer"))
    event.update(
        httpMethod=method, path=path, resource=path,
        methodArn=f"arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/{method}{path}",
    )
    _with_headers(event, headers or {})
    event["requestContext"].update(httpMethod=method, resourcePath=path, path=f"/prod{path}", requestId=str(uuid.uuid4()))
    return event


def handler_context(policy: dict) -> dict:
    """What API Gateway passes a handler from an Allow policy: the context, stringified, plus principalId."""
    context = {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in policy["context"].items()}
    return {**context, "principalId": policy["principalId"]}
