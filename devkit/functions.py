"""Function instances, pooled per function the way Lambda scales them.

An instance runs one invocation at a time and keeps its module state
(clients, caches) between invocations; a busy function gets more
instances, each with its own cold start. Two kinds of instance exist:

  WorkerInstance    (make run)         the handler imported in a worker process of ours
  EmulatorInstance  (make run-lambda)  the built function under the Lambda Runtime
                                       Interface Emulator (devkit/runtime_emulator.py)
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from devkit.backends import Pidfiles
from devkit.template import FunctionSpec

WORKER = Path(__file__).with_name("lambda_worker.py")


class InvocationError(Exception):
    """The function failed: it raised, crashed or could not start."""

    def __init__(self, error: dict) -> None:
        super().__init__(error.get("errorMessage", "function failed"))
        self.error = error


class InvocationTimeout(InvocationError):
    pass


class Instance(Protocol):
    init_ms: float | None

    def invoke(self, event: dict, *, timeout: float) -> Any: ...

    def alive(self) -> bool: ...

    def kill(self) -> None: ...


def lambda_environment(spec: FunctionSpec, environment: Mapping[str, str]) -> dict[str, str]:
    """What Lambda's runtime sets for a function, plus the function's own variables."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(spec.code_uri),
        **environment,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": environment.get("AWS_REGION", "us-east-1"),
        "AWS_DEFAULT_REGION": environment.get("AWS_DEFAULT_REGION", "us-east-1"),
        "_HANDLER": spec.handler,
        "PYTHONUNBUFFERED": "1",
    }


class FunctionPool:
    def __init__(self, spec: FunctionSpec, start: Callable[[], Instance], *, max_instances: int = 8,
                 rotate: bool = False) -> None:
        self.spec = spec
        self._start = start
        # The most recently used idle instance serves next (its caches are warmest), or with
        # `rotate` the least recently used, so that requests in a row visit every instance.
        self._rotate = rotate
        self._idle: list[Instance] = []
        self._all: set[Instance] = set()
        self._slots = threading.BoundedSemaphore(max_instances)
        self._lock = threading.Lock()
        self._closed = False

    def warm(self, instances: int = 1) -> float | None:
        """Start instances ahead of the first request; the first one's init time in ms, where known."""
        started = [self._new() for _ in range(instances)]
        for instance in started:
            self._release(instance)
        return started[0].init_ms

    def invoke(self, event: dict, *, timeout: float | None = None) -> Any:
        """Run the handler on `event` and return what it returned (parsed JSON)."""
        limit = self.spec.timeout if timeout is None else min(timeout, self.spec.timeout)
        if not self._slots.acquire(timeout=limit):
            raise InvocationError({"errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded."})
        try:
            instance = self._acquire()
            try:
                return instance.invoke(event, timeout=limit)
            finally:
                self._release(instance)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            instances, self._idle = list(self._all), []
        for instance in instances:
            instance.kill()

    def _acquire(self) -> Instance:
        with self._lock:
            while self._idle:
                instance = self._idle.pop(0 if self._rotate else -1)
                if instance.alive():
                    return instance
                self._all.discard(instance)
                instance.kill()  # it died idle: reaped, and its pidfile gone
        return self._new()

    def _new(self) -> Instance:
        instance = self._start()
        with self._lock:
            self._all.add(instance)
        return instance

    def _release(self, instance: Instance) -> None:
        """Back to the idle list, unless it died (crash, timeout) or the pool is closing."""
        with self._lock:
            keep = not self._closed and instance.alive()
            if keep:
                self._idle.append(instance)
            else:
                self._all.discard(instance)
        if not keep:
            instance.kill()


class ProcessInstance:
    """An instance that is a child process: alive while it runs, killed when retired; written down in
    `pidfiles` while it runs, if given, so that a runner killed outright does not leave it behind."""

    _process: subprocess.Popen
    _pidfiles: Pidfiles | None = None

    def _started(self, process: subprocess.Popen, pidfiles: Pidfiles | None, name: str) -> None:
        self._process, self._pidfiles = process, pidfiles
        if pidfiles:
            pidfiles.record(process, name, signal.SIGKILL)

    def alive(self) -> bool:
        return self._process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self._process.kill()
        self._process.wait()
        if self._pidfiles:
            self._pidfiles.forget(self._process)


class WorkerInstance(ProcessInstance):
    """The handler imported in a worker process; invocations go over a socket pair."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], *, log: IO[Any] | None = None,
                 pidfiles: Pidfiles | None = None) -> None:
        parent, child = socket.socketpair()
        paths = [str(spec.code_uri), *(str(layer) for layer in spec.layers)]
        command = [sys.executable, "-I", str(WORKER), "--fd", str(child.fileno()), "--handler", spec.handler]
        for path in paths:
            command += ["--path", path]
        process = subprocess.Popen(
            command, env=lambda_environment(spec, environment), pass_fds=[child.fileno()], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, cwd=paths[0],
            # Ctrl-C goes to the terminal's process group; an instance stops when its pool says so,
            # after its invocation, or when the pool's socket closes.
            start_new_session=True,
        )
        self._started(process, pidfiles, f"an instance of {spec.name}")
        child.close()
        self._timeout_s = spec.timeout
        self._channel = parent
        self._reader, self._writer = parent.makefile("r", encoding="utf-8"), parent.makefile("w", encoding="utf-8")
        line = self._read_line(60)
        init = json.loads(line) if line else {"ready": False, "error": {"errorMessage": "the function did not start"}}
        self.init_ms: float | None = init.get("init_ms")
        if not init.get("ready"):
            self.kill()
            raise InvocationError({"errorType": "Runtime.ImportModuleError", **init.get("error", {})})

    def invoke(self, event: dict, *, timeout: float) -> Any:
        deadline_ms = int((time.time() + self._timeout_s) * 1000)
        try:
            self._writer.write(json.dumps({"event": event, "request_id": str(uuid.uuid4()), "deadline_ms": deadline_ms}) + "\n")
            self._writer.flush()
        except OSError:  # its process is gone, and the socket with it
            self.kill()
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": "The function's process exited."}) from None
        line = self._read_line(timeout)
        if line is None:
            self.kill()
            raise InvocationTimeout({"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {timeout:.2f} seconds"})
        if not line:
            self.kill()
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": "The function's process exited."})
        reply = json.loads(line)
        if "error" in reply:
            raise InvocationError(reply["error"])
        return reply["result"]

    def _read_line(self, timeout: float) -> str | None:
        """A line from the worker, '' if it exited, None if `timeout` passed first."""
        ready, _, _ = select.select([self._channel], [], [], timeout)
        return self._reader.readline() if ready else None
