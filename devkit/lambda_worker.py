"""One function instance: imports the handler once, then serves invocations.

Started by devkit.functions (WorkerInstance) with `python -I`, so nothing is importable but
the function's code, its layers and the virtualenv's packages, as in Lambda
(/var/task, /opt/python, the runtime). Invocations arrive as JSON lines on
an inherited socket; stdout and stderr are the function's log.

This file imports nothing from devkit: it runs in the function's world.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--path", action="append", default=[])
    args = parser.parse_args()

    sys.path[:0] = args.path
    os.chdir(args.path[0])
    channel = socket.socket(fileno=args.fd)
    reader, writer = channel.makefile("r", encoding="utf-8"), channel.makefile("w", encoding="utf-8")

    _root_logging()
    started = time.monotonic()
    module_name, function_name = args.handler.rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        init = {"ready": True, "init_ms": round((time.monotonic() - started) * 1000, 1)}
    except Exception as error:  # noqa: BLE001 - an init failure is reported, as Lambda does
        _report(error)
        handler, init = None, {"ready": False, "error": _error(error)}
    writer.write(json.dumps(init) + "\n")
    writer.flush()
    if handler is None:
        return

    for line in reader:
        invocation = json.loads(line)
        context = LambdaContext(invocation["request_id"], invocation["deadline_ms"])
        try:
            reply = {"result": handler(invocation["event"], context)}
        except Exception as error:  # noqa: BLE001 - the runtime reports any handler error
            _report(error, invocation["request_id"])
            reply = {"error": _error(error)}
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            writer.write(json.dumps(reply, default=str) + "\n")
        except TypeError as error:
            writer.write(json.dumps({"error": _error(error)}) + "\n")
        writer.flush()


if __name__ == "__main__":
    main()
