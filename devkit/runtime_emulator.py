"""Built functions under the real Lambda runtime, without Docker.

Each instance is one `aws-lambda-rie` process (the Runtime Interface
Emulator that ships in the aws-sam-cli wheel) running the Lambda Python
runtime client, `awslambdaric`, from a virtualenv that holds nothing else
but what Lambda's Python runtime provides (boto3). The function runs from
`.aws-sam/build/<Function>` (its task root and working directory) with its
layers' `python/` folders on PYTHONPATH, as Lambda puts them under
/opt/python: a module `sam build` did not package cannot be imported.

The emulator enforces the function's timeout and restarts a runtime that
crashed or timed out, so the next request gets a fresh one. Its log, and
the function's, go to the given stream; the init duration it reports
(`INIT REPORT(durationMs: …)`) is kept on the instance.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from devkit.backends import Pidfiles, free_ports, port_open
from devkit.functions import InvocationError, InvocationTimeout, ProcessInstance, lambda_environment
from devkit.template import FunctionSpec

_INIT_REPORT = re.compile(rb"INIT REPORT\(durationMs: ([0-9.]+)\)")


def emulator_binary() -> Path:
    import platform

    import samcli

    architecture = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    return Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{architecture}"


class EmulatorInstance(ProcessInstance):
    def __init__(
        self, spec: FunctionSpec, environment: Mapping[str, str], *, runtime_python: Path, log: IO[Any] | None = None,
        pidfiles: Pidfiles | None = None,
    ) -> None:
        env = {
            **lambda_environment(spec, environment),
            # Where Lambda's Python runtime finds layers: /opt/python.
            "PYTHONPATH": ":".join(str(layer / "python") for layer in spec.layers),
            # The emulator (Go) serves one invocation at a time: more than one thread of it only
            # costs CPU, about 0.4 ms a request here.
            "GOMAXPROCS": "1",
        }
        self.init_ms: float | None = None
        self.init_reported = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._log = log
        for _ in range(3):
            self._port, runtime_api = free_ports(2)
            command = [
                str(emulator_binary()), "--log-level", "info",
                "--runtime-interface-emulator-address", f"127.0.0.1:{self._port}",
                "--runtime-api-address", f"127.0.0.1:{runtime_api}",
                str(runtime_python), "-m", "awslambdaric", spec.handler,
            ]
            process = subprocess.Popen(
                command, env=env, cwd=spec.code_uri, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, bufsize=0,
            )
            self._started(process, pidfiles, f"the Lambda runtime emulator of {spec.name}")
            threading.Thread(target=self._follow_log, args=(self._process,), daemon=True).start()
            if self._listening():
                return
            # It exited: most likely another process took a port between choosing it and binding it.
            self.kill()
        raise InvocationError({"errorType": "Runtime.EmulatorError", "errorMessage": "the emulator did not start"})

    def _listening(self, timeout: float = 15.0) -> bool:
        """Whether the emulator is up: its port open, or still starting when `timeout` ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", self._port, timeout=0.1):
                return True
            if self._process.poll() is not None:
                return False
            time.sleep(0.05)
        return self.alive()

    def _follow_log(self, process: subprocess.Popen) -> None:
        """Passes the emulator's output on as it comes, in chunks rather than lines (an invocation
        logs several), and reads the first init duration it reports."""
        assert process.stdout is not None
        source = process.stdout.fileno()
        sink = getattr(self._log, "buffer", None)
        seen = b""
        while chunk := os.read(source, 1 << 16):
            if self.init_ms is None:
                seen = seen[-200:] + chunk
                found = _INIT_REPORT.search(seen)
                if found:
                    self.init_ms = float(found.group(1))
                    self.init_reported.set()
            if sink is not None:
                sink.write(chunk)
                sink.flush()
            elif self._log is not None:
                self._log.write(chunk.decode(errors="replace"))
                self._log.flush()

    def invoke(self, event: dict, *, timeout: float) -> Any:
        try:
            # The emulator stops the function at its own timeout; a little grace for its answer.
            # A 502 means the runtime crashed (the emulator restarts it); the body says why.
            body = self._post(json.dumps(event).encode(), timeout=timeout + 2)
        except (TimeoutError, socket.timeout, OSError, http.client.HTTPException) as error:
            # Still running when the caller stopped waiting (API Gateway's 29 s), or the emulator
            # is gone: this instance is busy with it or dead, so it is retired.
            self.kill()
            raise InvocationTimeout({"errorType": "Sandbox.Timedout", "errorMessage": str(error)}) from None
        if body.startswith("Task timed out"):
            raise InvocationTimeout({"errorType": "Sandbox.Timedout", "errorMessage": body})
        payload = json.loads(body) if body else None
        if isinstance(payload, dict) and "errorType" in payload and "errorMessage" in payload and "statusCode" not in payload:
            raise InvocationError(payload)
        return payload

    def _post(self, data: bytes, *, timeout: float) -> str:
        """One invocation over the instance's kept-alive connection to its emulator."""
        reused = self._connection is not None
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=timeout)
        self._connection.timeout = timeout
        try:
            self._connection.request("POST", "/2015-03-31/functions/function/invocations", body=data,
                                     headers={"Content-Type": "application/json"})
            return self._connection.getresponse().read().decode()
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            self._connection.close()
            self._connection = None
            if not reused:
                raise
            # A kept-alive connection the emulator had closed before the request: send it afresh.
            return self._post(data, timeout=timeout)
