"""devkit's own Lambda Runtime API, for built functions whose runtime streams.

The Runtime Interface Emulator in the aws-sam-cli wheel accepts a streamed
response but hands it on only once the function has finished, in one
piece. A function whose environment sets `AWS_LAMBDA_EXEC_WRAPPER` (InferGate's
ChatFunction, whose wrapper starts InferGate's own runtime loop) runs here
instead, so that `make run-lambda` shows a stream's timing, not only its format.

Emulated, for one instance (one runtime process, one server of its own on
127.0.0.1, as one emulator process serves one runtime):
  GET  /2018-06-01/runtime/invocation/next           blocks until there is an invocation; its event as
                                                     the body, with Lambda-Runtime-Aws-Request-Id,
                                                     -Deadline-Ms, -Invoked-Function-Arn and -Trace-Id
  POST /2018-06-01/runtime/invocation/{id}/response  buffered (at most 6 MB, else 413 and the invocation
                                                     fails with Function.ResponseSizeTooLarge), or with
                                                     `Lambda-Runtime-Function-Response-Mode: streaming`:
                                                     each chunk handed on as it arrives, the error
                                                     trailers read at its end
  POST /2018-06-01/runtime/invocation/{id}/error     the handler failed
  POST /2018-06-01/runtime/init/error                the runtime could not start the handler
Each is answered 202 {"status": "OK"}; a request id that is not the invocation in hand (or was
answered already) 400 InvalidRequestID; any other path 404.

The runtime is started as Lambda starts one with an exec wrapper: the
wrapper script (`/var/task/...` is the built function's folder, `/opt/...`
its layers') with the Python runtime's own command as its arguments, in the
task root, with Lambda's environment (devkit.functions.lambda_environment),
the layers' `python/` folders on PYTHONPATH (Lambda's /opt/python),
`AWS_LAMBDA_RUNTIME_API` pointing here and the Lambda runtime virtualenv's
bin first on PATH (`python3` is its interpreter). The process starts when
the instance is made; its init duration (`init_ms`) runs from its start to
its first `/next`, and an init error fails the instance as it fails Lambda's
first invocation. At the function's timeout the runtime is killed
(Sandbox.Timedout); one that exits mid-invocation is Runtime.ExitError.
Either way the instance is retired, and the pool starts a fresh one for the
next invocation, as the emulator restarts its runtime.

A stream whose reader has gone (cancel) is ended the way Lambda ends it: the
connection of the runtime's streaming POST is reset, so its next chunk write
fails; the instance stays busy until the runtime is back at `/next`.

Not emulated: the Extensions and Telemetry APIs, SnapStart's
`/runtime/restore`, client context and Cognito identity headers, X-Ray (the
trace id is made up, never sampled), START/END/REPORT log lines, the memory
limit (MemorySize is only reported), freezing the sandbox between
invocations, Lambda's 10 s limit on init (60 s here, for loaded machines),
and the size and bandwidth limits of a streamed response. The runtime runs
on this machine's OS and Python, not Amazon Linux.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devkit import httpserver
from devkit.backends import Pidfiles
from devkit.functions import (
    Instance,
    InvocationError,
    InvocationTimeout,
    ProcessInstance,
    lambda_environment,
    open_stream,
)
from devkit.runtime_emulator import EmulatorInstance
from devkit.template import FunctionSpec

_API = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"{_API}/invocation/([^/]+)/(response|error)")
_ACCEPTED = {"status": "OK"}
# Lambda's limit on a buffered (synchronous) response.
_RESPONSE_MAX = 6 * 1024 * 1024
_TRAILER_MAX = 1 << 16  # an error body, base64, with its stack trace
_INIT_SECONDS = 60.0


def lambda_instance(spec: FunctionSpec, environment: Mapping[str, str], *, runtime_python: Path,
                    log: IO[Any] | None = None, pidfiles: Pidfiles | None = None) -> Instance:
    """An instance of a built function under the Lambda runtime: here if it has an exec wrapper (the
    emulator would buffer what its runtime streams), under the emulator otherwise."""
    if environment.get("AWS_LAMBDA_EXEC_WRAPPER"):
        return RuntimeApiInstance(spec, environment, runtime_python=runtime_python, log=log, pidfiles=pidfiles)
    return EmulatorInstance(spec, environment, runtime_python=runtime_python, log=log, pidfiles=pidfiles)


@dataclass
class _Invocation:
    request_id: str
    event: bytes
    deadline_ms: int
    # What the runtime answers, in order: ("result", payload), ("error", error), ("chunk", bytes) ...
    # then ("end", None) or ("error", error); ("exit", status) if the runtime exits.
    outcome: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    answered: bool = False
    stream: socket.socket | None = None  # the connection of its streaming response, while it is read


class RuntimeApiInstance(ProcessInstance):
    """One runtime process under a Runtime API server of its own."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], *, runtime_python: Path,
                 log: IO[Any] | None = None, pidfiles: Pidfiles | None = None) -> None:
        self.init_ms: float | None = None
        self.init_reported = threading.Event()
        self._timeout_s = spec.timeout
        env = lambda_environment(spec, environment)
        wrapper = _local_path(env["AWS_LAMBDA_EXEC_WRAPPER"], spec)
        self.function_arn = f"arn:aws:lambda:{env['AWS_REGION']}:123456789012:function:{spec.name}"
        self._lock = threading.Lock()
        self._invocations: queue.SimpleQueue[_Invocation | None] = queue.SimpleQueue()
        self._invocation: _Invocation | None = None
        self._exit_status: int | None = None
        self._init_error: dict | None = None
        self._free = threading.Event()  # the runtime waits at /next, or is gone
        self._stopped = False
        self._server = _Server(self)
        # Polled often, so that retiring the instance (at a timeout, say) does not wait half a second.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"runtime-api-{spec.name}",
                         daemon=True).start()
        self._start(spec, wrapper, env, runtime_python, log, pidfiles)

    def _start(self, spec: FunctionSpec, wrapper: Path, env: dict[str, str], runtime_python: Path,
               log: IO[Any] | None, pidfiles: Pidfiles | None) -> None:
        """Starts the runtime as Lambda starts one with an exec wrapper, and waits for its init."""
        host, port = self._server.server_address[:2]
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}",
            "PYTHONPATH": ":".join(str(layer / "python") for layer in spec.layers),
            "PATH": f"{runtime_python.parent}:{env['PATH']}",
        })
        # The wrapper is handed the command that would start Lambda's own Python runtime.
        command = [str(wrapper), str(runtime_python), "-m", "awslambdaric", spec.handler]
        self._spawned = time.monotonic()
        try:
            process = subprocess.Popen(command, env=env, cwd=spec.code_uri, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, start_new_session=True)
        except OSError as error:
            self._stop_server()
            raise InvocationError({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": str(error)}) from None
        self._started(process, pidfiles, f"the Lambda runtime of {spec.name}")
        threading.Thread(target=self._watch, name=f"runtime-{spec.name}", daemon=True).start()
        if not self._free.wait(_INIT_SECONDS) or self._init_error or not self.alive():
            error = self._init_error or {"errorMessage": "The runtime exited or did not start in time."}
            self.kill()
            raise InvocationError({"errorType": "Runtime.ImportModuleError", **error})

    def invoke(self, event: dict, *, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        invocation = _Invocation(str(uuid.uuid4()), json.dumps(event).encode(),
                                 int((time.time() + self._timeout_s) * 1000))
        with self._lock:
            if self._exit_status is not None:
                raise _exited(invocation, self._exit_status)
            self._invocation = invocation
        self._invocations.put(invocation)
        kind, value = self._outcome(invocation, deadline, timeout)
        if kind == "chunk":
            return open_stream(self._chunks(invocation, value, deadline, timeout),
                               lambda: self._cancel(invocation, deadline))
        if kind == "error":
            raise InvocationError(value)
        return value

    def kill(self) -> None:
        super().kill()
        self._stop_server()

    def _chunks(self, invocation: _Invocation, first: bytes, deadline: float, timeout: float) -> Iterator[bytes]:
        kind, value = "chunk", first
        while kind == "chunk":
            yield value
            kind, value = self._outcome(invocation, deadline, timeout)
        if kind == "error":
            raise InvocationError(value)

    def _outcome(self, invocation: _Invocation, deadline: float, timeout: float) -> tuple[str, Any]:
        """What the runtime answers next; it is killed if it exits or overruns `deadline`."""
        try:
            kind, value = invocation.outcome.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            raise InvocationTimeout({"errorType": "Sandbox.Timedout",
                                     "errorMessage": f"Task timed out after {timeout:.2f} seconds"}) from None
        if kind == "exit":
            self.kill()
            raise _exited(invocation, value)
        return kind, value

    def _cancel(self, invocation: _Invocation, deadline: float) -> None:
        """The stream's reader is gone: reset the runtime's streaming POST, so that its next write
        fails, and wait until it is back at /next (or kill it at its deadline)."""
        with self._lock:
            connection = invocation.stream
        if connection is not None:
            try:
                # Reset rather than closed: a write after it fails at once, not one write later.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # its POST has just ended
        if not self._free.wait(max(0.0, deadline - time.monotonic())):
            self.kill()

    def _watch(self) -> None:
        """Reports the runtime's exit to the invocation in hand, if any."""
        status = self._process.wait()
        with self._lock:
            self._exit_status, invocation = status, self._invocation
        if invocation is not None:
            invocation.outcome.put(("exit", status))
        self._free.set()

    def _stop_server(self) -> None:
        with self._lock:
            stopping, self._stopped = not self._stopped, True
        if stopping:
            self._invocations.put(None)  # a /next still waiting gives up
            self._free.set()
            self._server.shutdown()
            self._server.server_close()

    # What the server's handlers call.

    def next_invocation(self) -> _Invocation | None:
        """The next invocation, once there is one; None once the instance is retired."""
        if self.init_ms is None:
            self.init_ms = round((time.monotonic() - self._spawned) * 1000, 1)
            self.init_reported.set()
        self._free.set()
        invocation = self._invocations.get()
        if invocation is not None:
            self._free.clear()
        return invocation

    def claim(self, request_id: str) -> _Invocation | None:
        """The invocation in hand if it is `request_id` and unanswered, now answered; else None."""
        with self._lock:
            invocation = self._invocation
            if invocation is None or invocation.request_id != request_id or invocation.answered:
                return None
            invocation.answered = True
            return invocation

    def streaming(self, invocation: _Invocation, connection: socket.socket | None) -> None:
        with self._lock:
            invocation.stream = connection

    def init_failed(self, error: dict) -> None:
        self._init_error = error


def _exited(invocation: _Invocation, status: int) -> InvocationError:
    return InvocationError({"errorType": "Runtime.ExitError", "errorMessage":
                            f"RequestId: {invocation.request_id} Error: Runtime exited with error: exit status {status}"})


def _local_path(path: str, spec: FunctionSpec) -> Path:
    """Where a path of the Lambda sandbox is here: /var/task is the built function, /opt its layers."""
    if path.startswith("/var/task/"):
        return spec.code_uri / path.removeprefix("/var/task/")
    for layer in spec.layers if path.startswith("/opt/") else ():
        if (layer / path.removeprefix("/opt/")).exists():
            return layer / path.removeprefix("/opt/")
    raise InvocationError({"errorType": "Runtime.InvalidEntrypoint",
                           "errorMessage": f"{path} is neither in the function's folder nor in a layer"})


def _error(header: str | None, body: bytes) -> dict:
    """The error a runtime reports: its JSON body, typed by its header when the body says nothing."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return {"errorType": header or "Unhandled", "errorMessage": "", **(parsed if isinstance(parsed, dict) else {})}


def _payload(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")  # not a proxy response: the gateway answers 502


class _Handler(httpserver.Handler):
    server: _Server
    max_body = _RESPONSE_MAX
    max_line = _TRAILER_MAX

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != f"{_API}/invocation/next":
            self._answer(404, {"errorType": "NotFound", "errorMessage": "Not found"})
            return
        invocation = self.server.instance.next_invocation()
        if invocation is None:
            self.close_connection = True
            return
        self.send_response(200)
        for name, value in (("Content-Type", "application/json"),
                            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                            ("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms)),
                            ("Lambda-Runtime-Invoked-Function-Arn", self.server.instance.function_arn),
                            ("Lambda-Runtime-Trace-Id", _trace_id()),
                            ("Content-Length", str(len(invocation.event)))):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(invocation.event)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == f"{_API}/init/error":
            self.server.instance.init_failed(_error(self.headers.get("Lambda-Runtime-Function-Error-Type"), self._body()))
            self._answer(202, _ACCEPTED)
            return
        found = _INVOCATION.fullmatch(self.path)
        if found is None:
            self._answer(404, {"errorType": "NotFound", "errorMessage": "Not found"})
            return
        invocation = self.server.instance.claim(found.group(1))
        if invocation is None:
            self.body_unread, self.close_connection = True, True
            self._answer(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})
        elif found.group(2) == "error":
            invocation.outcome.put(("error", _error(self.headers.get("Lambda-Runtime-Function-Error-Type"), self._body())))
            self._answer(202, _ACCEPTED)
        elif self.headers.get("Lambda-Runtime-Function-Response-Mode", "").lower() == "streaming":
            self._stream(invocation)
        else:
            self._respond(invocation)

    def _respond(self, invocation: _Invocation) -> None:
        try:
            body = b"".join(self.body_pieces())
            if len(body) > _RESPONSE_MAX:
                raise httpserver.BodyRefused(413, "Payload Too Large")
        except httpserver.BodyRefused as refused:
            self.body_unread, self.close_connection = True, True
            invocation.outcome.put(("error", {
                "errorType": "Function.ResponseSizeTooLarge" if refused.status == 413 else "Runtime.InvalidResponse",
                "errorMessage": refused.message}))
            self._answer(refused.status, {"errorType": "RequestEntityTooLarge" if refused.status == 413 else "InvalidRequest",
                                          "errorMessage": refused.message})
            return
        invocation.outcome.put(("result", _payload(body)))
        self._answer(202, _ACCEPTED)

    def _stream(self, invocation: _Invocation) -> None:
        """Hands each chunk on as it arrives; at the end, what the trailers say."""
        instance = self.server.instance
        instance.streaming(invocation, self.connection)
        trailers: dict[str, str] = {}
        try:
            for piece in self.body_pieces(trailers):
                invocation.outcome.put(("chunk", piece))
        except httpserver.BodyRefused as refused:
            self.close_connection = True
            invocation.outcome.put(("error", {"errorType": "Runtime.InvalidStream", "errorMessage": refused.message}))
            return
        except OSError:
            # Reset by a cancel, or the runtime went away (its exit is reported when it is seen).
            self.close_connection = True
            return
        finally:
            instance.streaming(invocation, None)
        error_type = trailers.get("lambda-runtime-function-error-type")
        if error_type:
            invocation.outcome.put(("error", _error(error_type, _unbase64(trailers.get("lambda-runtime-function-error-body", "")))))
        else:
            invocation.outcome.put(("end", None))
        self._answer(202, _ACCEPTED)

    def _body(self) -> bytes:
        try:
            return self.read_body()
        except httpserver.BodyRefused:
            self.close_connection = True
            return b""

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # Lambda logs no access lines for its Runtime API


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text)
    except ValueError:
        return b""


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


class _Server(httpserver.Server):
    daemon_threads = True  # a /next waiting for an invocation never holds up a shutdown

    def __init__(self, instance: RuntimeApiInstance) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.instance = instance
