"""Function instances as worker processes, pooled per function like Lambda's.

Each worker is one instance: it runs one invocation at a time, keeps its
module state (clients, caches) between invocations, and is replaced when
it crashes or overruns its timeout. Idle workers are reused; a busy
function gets more workers, each with its own cold start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devkit.template import FunctionSpec

WORKER = Path(__file__).with_name("lambda_worker.py")


class InvocationError(Exception):
    """The function failed: it raised, crashed or could not start."""

    def __init__(self, error: dict) -> None:
        super().__init__(error.get("errorMessage", "function failed"))
        self.error = error


class InvocationTimeout(InvocationError):
    pass


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen
    reader: IO[str]
    writer: IO[str]
    init_ms: float

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


class FunctionPool:
    def __init__(
        self, spec: FunctionSpec, environment: Mapping[str, str], *, max_instances: int = 8,
        log: IO[Any] | None = None,
    ) -> None:
        self.spec = spec
        self._environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(spec.code_uri),
            **environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
            "AWS_REGION": environment.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": environment.get("AWS_DEFAULT_REGION", "us-east-1"),
            "_HANDLER": spec.handler,
            "PYTHONUNBUFFERED": "1",
        }
        self._log = log
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots = threading.BoundedSemaphore(max_instances)
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> float:
        """Start one instance ahead of the first request; returns its init time in ms."""
        worker = self._start()
        self._release(worker)
        return worker.init_ms

    def invoke(self, event: dict, *, timeout: float | None = None) -> Any:
        """Run the handler on `event` and return what it returned (parsed JSON)."""
        limit = self.spec.timeout if timeout is None else min(timeout, self.spec.timeout)
        if not self._slots.acquire(timeout=limit):
            raise InvocationError({"errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded."})
        try:
            worker = self._acquire()
            request_id = str(uuid.uuid4())
            deadline_ms = int((time.time() + self.spec.timeout) * 1000)
            worker.writer.write(json.dumps({"event": event, "request_id": request_id, "deadline_ms": deadline_ms}) + "\n")
            worker.writer.flush()
            line = _read_line(worker.reader, limit)
            if line is None:
                self._discard(worker)
                raise InvocationTimeout(
                    {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {limit:.2f} seconds"}
                )
            if not line:
                self._discard(worker)
                raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": "The function's process exited."})
            self._release(worker)
            reply = json.loads(line)
            if "error" in reply:
                raise InvocationError(reply["error"])
            return reply["result"]
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._all), []
        for worker in workers:
            worker.kill()

    def _acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
        return self._start()

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed or not worker.alive():
                self._all.discard(worker)
                worker.kill()
            else:
                self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def _start(self) -> _Worker:
        parent, child = socket.socketpair()
        paths = [str(self.spec.code_uri), *(str(layer) for layer in self.spec.layers)]
        command = [sys.executable, "-I", str(WORKER), "--fd", str(child.fileno()), "--handler", self.spec.handler]
        for path in paths:
            command += ["--path", path]
        process = subprocess.Popen(
            command, env=self._environment, pass_fds=[child.fileno()], stdout=self._log, stderr=self._log,
            stdin=subprocess.DEVNULL, cwd=paths[0],
            # Ctrl-C goes to the terminal's process group; an instance stops when its pool says so,
            # after its invocation, or when the pool's socket closes.
            start_new_session=True,
        )
        child.close()
        reader, writer = parent.makefile("r", encoding="utf-8"), parent.makefile("w", encoding="utf-8")
        line = _read_line(reader, 60)
        init = json.loads(line) if line else {"ready": False, "error": {"errorMessage": "the function did not start"}}
        worker = _Worker(process, reader, writer, init.get("init_ms", 0.0))
        if not init.get("ready"):
            worker.kill()
            raise InvocationError({"errorType": "Runtime.ImportModuleError", **init.get("error", {})})
        with self._lock:
            self._all.add(worker)
        return worker


def _read_line(reader: IO[str], timeout: float) -> str | None:
    """A line from the worker, '' if it exited, None if `timeout` passed first."""
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(reader.readline()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None
    return result[0]
