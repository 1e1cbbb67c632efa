"""InferGate's own Lambda runtime loop, for functions that stream their responses.

Lambda's Python runtime client cannot stream a response; the Runtime API
can. A function whose environment sets `AWS_LAMBDA_EXEC_WRAPPER` to its
`stream-runtime` script runs this loop in place of that client:

  GET  /2018-06-01/runtime/invocation/next             the next event
  POST /2018-06-01/runtime/invocation/{id}/response    what the handler returned:
       a dict, buffered, as JSON (the API's other routes);
       a StreamedResponse, streamed: `Lambda-Runtime-Function-Response-Mode: streaming`,
       chunked, the prelude (status and headers) as JSON, 8 NUL bytes, then the body
       as it is produced. A failure mid-stream goes in the trailers.
  POST /2018-06-01/runtime/invocation/{id}/error       the handler raised
  POST /2018-06-01/runtime/init/error                  the handler could not be imported

API Gateway's streaming integration (`ResponseTransferMode: RESPONSE_STREAM`)
reads the prelude and passes the body on chunk by chunk. When a chunk can
no longer be written (the reader is gone) the response is closed, which
stops whatever produces it.

It needs nothing outside the standard library, and of that not http.client
(whose import, with the email package and ssl it pulls in, costs a cold start
more than the rest of this loop): it speaks HTTP/1.1 to the Runtime API over
one socket itself, so that it costs a cold start no more than the client it
replaces.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

API_VERSION = "2018-06-01"
PRELUDE_END = b"\0" * 8
# What API Gateway's streaming integration expects the response to be.
STREAM_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"


class StreamedResponse:
    """A response API Gateway streams: its prelude (statusCode, headers), then the body as the
    handler produces it. Closing it, once its reader is gone, closes the body's iterator."""

    def __init__(self, prelude: dict[str, Any], body: Iterable[bytes]) -> None:
        self.prelude = prelude
        self._body = iter(body)

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def encoded_prelude(self) -> bytes:
        return json.dumps(self.prelude).encode() + PRELUDE_END

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class ReaderGone(Exception):
    """A streamed chunk could not be written: nobody reads the response any more."""


class LambdaContext:
    """What Lambda's Python runtime hands a handler as `context`."""

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class Connection:
    """HTTP/1.1 over one kept-alive socket, as much of it as the Runtime API needs: a request
    with its body whole or chunked, and a response whose body has a Content-Length or is
    chunked. Closed, it connects again for the next request."""

    def __init__(self, host: str, port: int) -> None:
        self._address, self._host = (host, port), f"{host}:{port}"
        self._socket: socket.socket | None = None
        self._reader: Any = None

    def send(self, data: bytes) -> None:
        if self._socket is None:
            self._socket = socket.create_connection(self._address)
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._reader = self._socket.makefile("rb")
        self._socket.sendall(data)

    def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}", *(f"{name}: {value}" for name, value in headers.items())]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_head(method, path, {**(headers or {}), "Content-Length": str(len(body))})
        if body:
            self.send(body)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The status, the headers (names in lower case) and the body of the response to the last request."""
        status_line = self._reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("the Runtime API closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self._reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self._reader.readline().split(b";")[0], 16):
                body += self._reader.read(size)
                self._reader.readline()
            while self._reader.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
        else:
            body = self._reader.read(int(headers.get("content-length") or 0))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self._socket is not None:
            self._reader.close()
            self._socket.close()
            self._socket = self._reader = None


class RuntimeApi:
    """The Runtime API at AWS_LAMBDA_RUNTIME_API, over one kept-alive connection."""

    def __init__(self, address: str) -> None:
        host, _, port = address.partition(":")
        self._connection = Connection(host, int(port or 80))
        self._base = f"/{API_VERSION}/runtime"

    def next(self) -> tuple[dict, dict[str, str]]:
        """The next event, and its headers (names in lower case)."""
        self._connection.request("GET", f"{self._base}/invocation/next")
        status, headers, body = self._connection.response()
        if status != 200:
            raise RuntimeError(f"the Runtime API answered {status} to /next")
        return json.loads(body), headers

    def respond(self, request_id: str, result: Any) -> None:
        self._post(f"{self._base}/invocation/{request_id}/response", json.dumps(result).encode())

    def fail(self, request_id: str, error: BaseException) -> None:
        self._post(f"{self._base}/invocation/{request_id}/error", json.dumps(_error_body(error)).encode(),
                   {"Lambda-Runtime-Function-Error-Type": _error_type(error)})

    def fail_init(self, error: BaseException) -> None:
        self._post(f"{self._base}/init/error", json.dumps(_error_body(error)).encode(),
                   {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})

    def stream(self, request_id: str, response: StreamedResponse) -> None:
        """Stream `response` as it is produced; close it if its reader goes away."""
        connection = self._connection
        connection.send_head("POST", f"{self._base}/invocation/{request_id}/response", {
            "Lambda-Runtime-Function-Response-Mode": "streaming", "Transfer-Encoding": "chunked",
            "Content-Type": STREAM_CONTENT_TYPE,
            "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"})
        trailers = b""
        try:
            _write_chunk(connection, response.encoded_prelude())
            for chunk in response:
                if chunk:
                    _write_chunk(connection, chunk)
        except ReaderGone:
            response.close()
            self._reconnect()
            return
        except Exception as error:  # noqa: BLE001 - a failure mid-stream goes in the trailers, as Lambda's runtimes do
            _report(error, request_id)
            body = base64.b64encode(json.dumps(_error_body(error)).encode()).decode()
            trailers = (f"Lambda-Runtime-Function-Error-Type: {_error_type(error)}\r\n"
                        f"Lambda-Runtime-Function-Error-Body: {body}\r\n").encode()
        try:
            connection.send(b"0\r\n" + trailers + b"\r\n")
            connection.response()
        except (OSError, ValueError, IndexError):
            self._reconnect()

    def _post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        self._connection.response()

    def _reconnect(self) -> None:
        self._connection.close()  # a new one is opened for the next request


def _write_chunk(connection: Connection, data: bytes) -> None:
    try:
        connection.send(b"%x\r\n%s\r\n" % (len(data), data))
    except OSError as error:
        raise ReaderGone() from error


def _error_type(error: BaseException) -> str:
    return type(error).__name__


def _error_body(error: BaseException) -> dict:
    return {"errorMessage": str(error), "errorType": _error_type(error),
            "stackTrace": traceback.format_tb(error.__traceback__)}


def _report(error: BaseException, request_id: str | None = None) -> None:
    """An error the handler did not handle, written to the function's log as Lambda's runtime does."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON":
        print(json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "ERROR",
                          "requestId": request_id, **_error_body(error)}), file=sys.stderr, flush=True)
    else:
        print(f"[ERROR] {_error_type(error)}: {error}", file=sys.stderr, flush=True)


def _load_handler() -> Any:
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


def serve(api: RuntimeApi, handler: Any) -> None:
    while True:
        event, headers = api.next()
        request_id = headers["lambda-runtime-aws-request-id"]
        # Each invocation's own trace, or none: never the one before's.
        if trace := headers.get("lambda-runtime-trace-id"):
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = LambdaContext(request_id, int(headers.get("lambda-runtime-deadline-ms") or 0),
                                headers.get("lambda-runtime-invoked-function-arn", ""))
        try:
            result = handler(event, context)
        except Exception as error:  # noqa: BLE001 - the runtime reports any handler error
            _report(error, request_id)
            api.fail(request_id, error)
            continue
        if isinstance(result, StreamedResponse):
            api.stream(request_id, result)
        else:
            api.respond(request_id, result)


def main() -> None:
    # Lambda reads the function's log from a pipe: a line must leave when it is written, as
    # under Lambda's own runtime, not when a buffer fills.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        handler = _load_handler()
    except Exception as error:  # noqa: BLE001 - an init failure is reported, and the runtime exits
        _report(error)
        api.fail_init(error)
        sys.exit(1)
    serve(api, handler)


if __name__ == "__main__":
    # Run as `python -m infergate.runtime`, this module is __main__: the StreamedResponse that
    # handlers return is infergate.runtime's, so the loop must be that module's too.
    from infergate import runtime

    runtime.main()
