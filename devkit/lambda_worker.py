"""One function instance: imports the handler once, then serves invocations.

Started by devkit.functions (WorkerInstance) with `python -I`, so nothing is importable but
the function's code, its layers and the virtualenv's packages, as in Lambda
(/var/task, /opt/python, the runtime). Invocations arrive as JSON lines on
an inherited socket; stdout and stderr are the function's log.

The JSON lines, one message each:
  to the worker    {"event", "request_id", "deadline_ms"}  an invocation
                   {"cancel": request_id}                   the streamed answer's reader is gone
  from the worker  {"ready": true, "init_ms"} or {"ready": false, "error"}   once, after the import
                   {"result": ...} or {"error": {...}}      a buffered answer, or the handler raised
                   {"chunk": base64}, ..., then {"end": true} or {"error": {...}}
                                                            a streamed answer: the bytes Lambda's
                                                            runtime would post (the encoded prelude
                                                            first), each sent as it is produced

A handler streams by returning what InferGate's runtime streams (infergate/runtime.py's
StreamedResponse, known here by its `prelude`, `encoded_prelude` and `close`). Before each
chunk the worker looks for a cancel; one found is what a failed write is to Lambda's
runtime: the response is closed, and the stream ends there.

This file imports nothing from devkit: it runs in the function's world.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import logging
import os
import select
import socket
import sys
import time
import traceback
from typing import Any

# As Lambda's runtime: with LoggingConfig's LogFormat JSON, its own lines are JSON objects.
JSON_LOGS = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


class LambdaContext:
    def __init__(self, request_id: str, deadline_ms: int) -> None:
        name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{os.environ['AWS_REGION']}:123456789012:function:{name}"
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(error: BaseException) -> dict:
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _report(error: BaseException, request_id: str | None = None) -> None:
    """An error the function did not handle, as the runtime writes it to the function's log."""
    if JSON_LOGS:
        line = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "ERROR",
                "requestId": request_id, **_error(error)}
        print(json.dumps(line), file=sys.stderr)
    else:
        print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exception(error)


class _JsonLines(logging.Formatter):
    """Records of other libraries' loggers, as the runtime's JSON log format writes them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"timestamp": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            line["stackTrace"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _root_logging() -> None:
    if JSON_LOGS:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonLines())
        logging.getLogger().addHandler(handler)


class Channel:
    """JSON lines over a socket, both ends of it (devkit.functions uses it too).

    Lines are split from a buffer of its own, not a file object's: whether a message is waiting
    must be answerable without blocking, and a file object's read-ahead hides lines from select.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._buffer = bytearray()

    def send(self, message: dict, default: Any = None) -> None:
        self._socket.sendall(json.dumps(message, default=default).encode() + b"\n")

    def receive(self, timeout: float | None = None) -> dict | None:
        """The next message; None if `timeout` passes first; EOFError once the other end has closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if deadline is not None:
                ready, _, _ = select.select([self._socket], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    return None
            data = self._socket.recv(1 << 16)
            if not data:
                raise EOFError("the other end closed the channel")
            self._buffer += data
        line = self._buffer[:end]
        del self._buffer[:end + 1]
        return json.loads(line)


def _streams(result: Any) -> bool:
    return all(hasattr(result, name) for name in ("prelude", "encoded_prelude", "close", "__iter__"))


def _cancelled(channel: Channel, request_id: str) -> bool:
    """Whether the gateway has said that this stream's reader is gone (never waits)."""
    try:
        while (message := channel.receive(timeout=0)) is not None:
            if message.get("cancel") == request_id:
                return True
    except EOFError:  # the gateway itself is gone: nobody reads
        return True
    return False


def _stream(channel: Channel, response: Any, request_id: str) -> None:
    """Sends a streamed response as it is produced, as Lambda's runtime posts it."""
    try:
        channel.send({"chunk": base64.b64encode(response.encoded_prelude()).decode()})
        for chunk in response:
            if not chunk:
                continue
            if _cancelled(channel, request_id):
                response.close()
                break
            channel.send({"chunk": base64.b64encode(chunk).decode()})
    except Exception as error:  # noqa: BLE001 - a failure mid-stream ends it, as the runtime's trailers say
        _report(error, request_id)
        end: dict = {"error": _error(error)}
    else:
        end = {"end": True}
    sys.stdout.flush()
    sys.stderr.flush()
    channel.send(end)


def _answer(channel: Channel, handler: Any, invocation: dict) -> None:
    """Runs one invocation and sends what came of it."""
    context = LambdaContext(invocation["request_id"], invocation["deadline_ms"])
    try:
        result = handler(invocation["event"], context)
    except Exception as error:  # noqa: BLE001 - the runtime reports any handler error
        _report(error, invocation["request_id"])
        reply = {"error": _error(error)}
    else:
        if _streams(result):
            _stream(channel, result, invocation["request_id"])
            return
        reply = {"result": result}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        channel.send(reply, default=str)
    except TypeError as error:
        channel.send({"error": _error(error)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--path", action="append", default=[])
    args = parser.parse_args()

    sys.path[:0] = args.path
    os.chdir(args.path[0])
    channel = Channel(socket.socket(fileno=args.fd))

    _root_logging()
    started = time.monotonic()
    module_name, function_name = args.handler.rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        init = {"ready": True, "init_ms": round((time.monotonic() - started) * 1000, 1)}
    except Exception as error:  # noqa: BLE001 - an init failure is reported, as Lambda does
        _report(error)
        handler, init = None, {"ready": False, "error": _error(error)}
    channel.send(init)
    if handler is None:
        return

    while True:
        try:
            message = channel.receive()
        except EOFError:  # the pool closed its end: this instance is retired
            return
        # A cancel that came after its stream had ended: nothing is left to cancel.
        if "cancel" not in message:
            _answer(channel, handler, message)


if __name__ == "__main__":
    main()
