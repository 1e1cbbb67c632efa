"""The events API Gateway (REST, v1 payload) sends to Lambda, built from an HTTP request.

Shapes follow what API Gateway sends and what `sam local generate-event
apigateway aws-proxy|request-authorizer` produces; tests hold them to it.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

ACCOUNT_ID = "123456789012"
API_ID = "infergate"
REGION = "us-east-1"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[-1] if values else None


def new_request_id() -> str:
    return str(uuid.uuid4())


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]] | None:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped or None


def _single(pairs: list[tuple[str, str]]) -> dict[str, str] | None:
    return {key: values[-1] for key, values in (_multi(pairs) or {}).items()} or None


def request_context(request: HttpRequest, *, resource: str, stage: str, request_id: str) -> dict:
    now = datetime.now(UTC)
    return {
        "accountId": ACCOUNT_ID,
        "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, resource).hex[:6],
        "stage": stage,
        "requestId": request_id,
        "extendedRequestId": request_id,
        "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(time.time() * 1000),
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "accessKey": None,
            "sourceIp": request.source_ip,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": request.header("user-agent"),
            "user": None,
        },
        "path": f"/{stage}{request.path}",
        "resourcePath": resource,
        "httpMethod": request.method,
        "apiId": API_ID,
        "protocol": request.protocol,
        "domainName": request.header("host") or "localhost",
    }


def _common(request: HttpRequest, *, resource: str, path_parameters: dict[str, str], stage: str, request_id: str) -> dict:
    query = parse_qsl(request.query, keep_blank_values=True)
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": _single(request.headers),
        "multiValueHeaders": _multi(request.headers),
        "queryStringParameters": _single(query),
        "multiValueQueryStringParameters": _multi(query),
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": request_context(request, resource=resource, stage=stage, request_id=request_id),
    }


def proxy_event(
    request: HttpRequest, *, resource: str, path_parameters: dict[str, str], stage: str, request_id: str,
    authorizer: dict | None = None,
) -> dict:
    event = _common(request, resource=resource, path_parameters=path_parameters, stage=stage, request_id=request_id)
    try:
        event["body"], event["isBase64Encoded"] = (request.body.decode("utf-8") if request.body else None), False
    except UnicodeDecodeError:
        event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    return event


def method_arn(request: HttpRequest, *, stage: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{stage}/{request.method}{request.path}"


def request_authorizer_event(
    request: HttpRequest, *, resource: str, path_parameters: dict[str, str], stage: str, request_id: str
) -> dict:
    event = _common(request, resource=resource, path_parameters=path_parameters, stage=stage, request_id=request_id)
    return {"type": "REQUEST", "methodArn": method_arn(request, stage=stage), **event}
