"""A local API Gateway (REST API, Lambda proxy integrations) for template.yaml.

Per request, as API Gateway does it: match a route (else the
MISSING_AUTHENTICATION_TOKEN response); if the route has a REQUEST
authorizer, invoke it and evaluate the policy it returns (a Deny, or no
Allow for this method ARN, is ACCESS_DENIED; an `Unauthorized` error is
UNAUTHORIZED; any other failure is AUTHORIZER_FAILURE); invoke the
function with the proxy event, the authorizer's context attached; map its
response back to HTTP, or answer 502/504 when it fails or overruns 29 s.
Responses API Gateway makes itself follow the template's GatewayResponses.
Before any of it, a body API Gateway would not take is refused unread: 413
past its 10 MB payload limit, 400 for a malformed Content-Length or chunked
framing (devkit/httpserver.py).

A route whose ResponseTransferMode is RESPONSE_STREAM is answered the way
API Gateway's streaming integration answers: the function must stream (its
prelude gives the status and headers), the body goes out chunk by chunk as
the function produces it, a failure mid-stream cuts the connection, and
only the function's own timeout bounds it, not the 29 s.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from devkit import events, httpserver
from devkit.events import HttpRequest
from devkit.functions import FunctionPool, InvocationError, InvocationTimeout, Streamed
from devkit.template import ApiSpec, Route

INTEGRATION_TIMEOUT = 29.0
MAX_PAYLOAD = 10 * 1024 * 1024

# API Gateway's own status and message for each kind of response it makes.
_DEFAULTS = {
    "ACCESS_DENIED": (403, "User is not authorized to access this resource with an explicit deny"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "AUTHORIZER_FAILURE": (500, None),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, None),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "DEFAULT_5XX": (502, "Internal server error"),
}


class Response:
    """An HTTP response: `body` whole, or, with `stream`, the body as the function streams it."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, stream: Streamed | None = None) -> None:
        self.status, self.headers, self.body, self.stream = status, headers, body, stream


class LocalApiGateway:
    def __init__(self, api: ApiSpec, pools: Mapping[str, FunctionPool]) -> None:
        self.api = api
        self.pools = pools

    def handle(self, request: HttpRequest) -> Response:
        request_id = events.new_request_id()
        context: dict[str, Any] = {"requestId": request_id}
        if len(request.body) > MAX_PAYLOAD:
            return self._gateway_response("REQUEST_TOO_LARGE", request, context)
        matched = self._route(request)
        if matched is None:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", request, context)
        route, path_parameters = matched

        authorizer_context = None
        if route.authorizer:
            outcome = self._authorize(route, path_parameters, request, request_id)
            if isinstance(outcome, tuple):
                kind, context["authorizer"] = outcome
                return self._gateway_response(kind, request, context)
            authorizer_context = outcome

        event = events.proxy_event(
            request, resource=route.path, path_parameters=path_parameters, stage=self.api.stage,
            request_id=request_id, authorizer=authorizer_context,
        )
        pool = self.pools[route.function]
        try:
            # A streamed route is bound by the function's own timeout alone.
            result = pool.invoke(event, timeout=None if route.streams else INTEGRATION_TIMEOUT)
        except InvocationTimeout:
            if not route.streams and pool.spec.timeout >= INTEGRATION_TIMEOUT:
                return self._gateway_response("INTEGRATION_TIMEOUT", request, context)
            return self._gateway_response("DEFAULT_5XX", request, context)
        except InvocationError:
            return self._gateway_response("DEFAULT_5XX", request, context)
        if route.streams:
            return self._streamed_response(result, request, context)
        return self._proxy_response(result, request, context)

    def refuse(self, kind: str, request: HttpRequest, message: str | None = None) -> Response:
        """API Gateway's own response of `kind` to a request it turns away before routing it (its
        body is malformed or too large), saying `message` in place of the usual words."""
        return self._gateway_response(kind, request, {"requestId": events.new_request_id()}, message)

    def _route(self, request: HttpRequest) -> tuple[Route, dict[str, str]] | None:
        for route in self.api.routes:
            parameters = route.match(request.method, request.path)
            if parameters is not None:
                return route, parameters
        return None

    def _authorize(
        self, route: Route, path_parameters: dict[str, str], request: HttpRequest, request_id: str
    ) -> dict | tuple[str, dict]:
        """The authorizer context for the handler, or (gateway response kind, context) to refuse."""
        authorizer = self.api.authorizers[route.authorizer]  # type: ignore[index]
        event = events.request_authorizer_event(
            request, resource=route.path, path_parameters=path_parameters, stage=self.api.stage, request_id=request_id
        )
        started = time.monotonic()
        try:
            policy = self.pools[authorizer.function].invoke(event)
        except InvocationError as error:
            if error.error.get("errorMessage") == "Unauthorized":
                return "UNAUTHORIZED", {}
            return "AUTHORIZER_FAILURE", {}
        if not _valid_policy(policy):
            if isinstance(policy, Streamed):
                policy.cancel()
            return "AUTHORIZER_CONFIGURATION_ERROR", {}
        # API Gateway hands the context on with every value as a string.
        context = {key: _stringify(value) for key, value in (policy.get("context") or {}).items()}
        context["principalId"] = str(policy["principalId"])
        if not _allows(policy["policyDocument"], event["methodArn"]):
            return "ACCESS_DENIED", context
        context["integrationLatency"] = int((time.monotonic() - started) * 1000)
        return context

    def _proxy_response(self, result: Any, request: HttpRequest, context: dict) -> Response:
        if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
            if isinstance(result, Streamed):  # a buffered integration cannot read a stream either
                result.cancel()
            return self._gateway_response("DEFAULT_5XX", request, context)
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return Response(result["statusCode"], _headers(result, context["requestId"]), raw)

    def _streamed_response(self, result: Any, request: HttpRequest, context: dict) -> Response:
        if not isinstance(result, Streamed):
            # The streaming integration reads a JSON prelude ended by 8 NUL bytes, then the body:
            # a buffered proxy response (or anything else) is not that, and API Gateway cannot parse it.
            return self._gateway_response("DEFAULT_5XX", request, context)
        prelude = result.prelude
        if not isinstance(prelude, dict) or not isinstance(prelude.get("statusCode"), int):
            result.cancel()
            return self._gateway_response("DEFAULT_5XX", request, context)
        return Response(prelude["statusCode"], _headers(prelude, context["requestId"]), b"", stream=result)

    def _gateway_response(self, kind: str, request: HttpRequest, context: dict, message: str | None = None) -> Response:
        default_status, default_message = _DEFAULTS[kind]
        default_message = message or default_message
        spec = self.api.gateway_responses.get(kind) or self.api.gateway_responses.get(
            "DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX"
        )
        context = {**context, "error": {"message": default_message, "messageString": json.dumps(default_message)}}
        status = spec.status_code if spec and spec.status_code else default_status
        if spec and spec.template:
            body = _render(spec.template, context)
        else:
            body = json.dumps({"message": default_message})
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", context["requestId"]),
                   ("x-amzn-ErrorType", _error_type(kind))]
        for name, expression in (spec.headers if spec else {}).items():
            value = _header_value(expression, request, context)
            if value is not None:
                headers.append((name, value))
        return Response(status, headers, body.encode())


def _headers(result: dict, request_id: str) -> list[tuple[str, str]]:
    """A proxy response's (or a prelude's) headers, a multi-value header replacing its single value."""
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers = [(k, v) for k, v in headers if k.lower() != name.lower()] + [(name, str(v)) for v in values]
    return [*headers, ("x-amzn-RequestId", request_id)]


def _error_type(kind: str) -> str:
    return {"ACCESS_DENIED": "AccessDeniedException", "UNAUTHORIZED": "UnauthorizedException",
            "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException"}.get(kind, "InternalServerErrorException")


def _stringify(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _valid_policy(policy: Any) -> bool:
    if not isinstance(policy, dict) or "principalId" not in policy or not isinstance(policy.get("policyDocument"), dict):
        return False
    context = policy.get("context") or {}
    # API Gateway accepts only flat string, number and boolean context values.
    return isinstance(context, dict) and all(isinstance(v, (str, int, float, bool)) for v in context.values())


def _allows(document: dict, method_arn: str) -> bool:
    statements = document.get("Statement") or []
    allowed = False
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        if any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")


def _lookup(context: dict, dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _render(template: str, context: dict) -> str:
    """Substitutes `$context.*` variables, the only mapping-template feature the API uses."""
    return _CONTEXT_VARIABLE.sub(lambda m: "" if _lookup(context, m.group(1)) is None else str(_lookup(context, m.group(1))), template)


def _header_value(expression: str, request: HttpRequest, context: dict) -> str | None:
    if expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1]
    if expression.startswith("context."):
        value = _lookup(context, expression.removeprefix("context."))
        return None if value is None else str(value)
    if expression.startswith("method.request.header."):
        return request.header(expression.removeprefix("method.request.header."))
    return None


class _Handler(httpserver.Handler):
    # An idle keep-alive connection is dropped after this long, so shutting
    # down never waits on a client that has gone quiet.
    timeout = 5
    max_body = MAX_PAYLOAD
    server: LocalApiServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self, busy=False)

    def finish(self) -> None:
        self.server.untrack(self)
        super().finish()

    def _serve(self) -> None:
        self.server.track(self, busy=True)
        try:
            self._answer()
        finally:
            self.server.track(self, busy=False)
            if self.server.stopping:
                self.close_connection = True

    def _answer(self) -> None:
        try:
            body = self.read_body()
        except httpserver.BodyRefused as refused:
            self.refuse_body(refused)
            return
        except (ConnectionError, TimeoutError):
            # The client closed, reset or went quiet mid-request: nobody to answer, and a body
            # cut short must not reach a function as if it were whole.
            self.close_connection = True
            return
        self._send(self.server.gateway.handle(replace(self._request(), body=body)))

    def refuse_body(self, refused: httpserver.BodyRefused) -> None:
        kind = "REQUEST_TOO_LARGE" if refused.status == 413 else "BAD_REQUEST_BODY"
        self.close_connection = True
        self._send(self.server.gateway.refuse(kind, self._request(), refused.message))

    def _request(self) -> HttpRequest:
        """The request as received so far, without its body."""
        path, _, query = self.path.partition("?")
        return HttpRequest(
            method=self.command, path=path, query=query, headers=list(self.headers.items()), body=b"",
            source_ip=self.client_address[0], protocol=self.request_version,
        )

    def _send(self, response: Response) -> None:
        if response.stream is not None:
            self._send_stream(response, response.stream)
            return
        self._send_head(response)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _send_head(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")

    def _send_stream(self, response: Response, stream: Streamed) -> None:
        """The status and headers now, then each chunk the moment the function produces it. A client
        that has gone cancels the stream; a failure mid-stream cuts the connection short of the last
        chunk, as API Gateway cuts a stream."""
        # An HTTP/1.0 client knows no chunks: its body ends when the connection closes.
        chunked = self.request_version == "HTTP/1.1"
        if not chunked:
            self.close_connection = True
        try:
            self._send_head(response)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for chunk in stream:
                if chunk:  # an empty chunk would end a chunked body
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except InvocationError:  # it failed mid-stream: the connection closes short of the last chunk
            self.close_connection = True
        except OSError:  # the client has gone (or stopped reading): nobody to stream to
            self.close_connection = True
        finally:
            stream.cancel()  # nothing once it has ended

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, too many headers, an unknown
        method), in the API's JSON shape rather than an HTML page."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        # A request line too broken to name its version still gets a status line and headers.
        self.request_version = self.protocol_version
        phrase = self.responses.get(code, ("Error",))[0]
        error = {"message": message or phrase, "type": "invalid_request_error" if code < 500 else "api_error",
                 "param": None, "code": "bad_request" if code < 500 else "gateway_error"}
        self._send(Response(code, [("Content-Type", "application/json")], json.dumps({"error": error}).encode()))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        if self.server.access_log is not None:
            print(f"{self.address_string()} {format % args}", file=self.server.access_log, flush=True)


class LocalApiServer(httpserver.Server):
    """Serves the gateway; `stop()` lets requests in flight finish."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], gateway: LocalApiGateway, *, access_log: Any = None) -> None:
        super().__init__(address, _Handler)
        self.gateway = gateway
        self.access_log = access_log
        self.stopping = False
        self._thread: threading.Thread | None = None
        self._connections: dict[_Handler, bool] = {}  # open connections: busy answering or idle
        self._connections_lock = threading.Lock()

    def track(self, handler: _Handler, *, busy: bool) -> None:
        with self._connections_lock:
            self._connections[handler] = busy

    def untrack(self, handler: _Handler) -> None:
        with self._connections_lock:
            self._connections.pop(handler, None)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; let requests in flight finish; close idle keep-alive connections now."""
        self.stopping = True
        self.shutdown()
        with self._connections_lock:
            idle = [handler for handler, busy in self._connections.items() if not busy]
        for handler in idle:
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()  # joins the threads still serving requests
