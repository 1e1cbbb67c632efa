"""Function instances, pooled per function the way Lambda scales them.

An instance runs one invocation at a time and keeps its module state
(clients, caches) between invocations; a busy function gets more
instances, each with its own cold start. Two kinds of instance exist:

  WorkerInstance      (make run)         the handler imported in a worker process of ours
  EmulatorInstance    (make run-lambda)  the built function under the Lambda Runtime
                                         Interface Emulator (devkit/runtime_emulator.py)
  RuntimeApiInstance  (make run-lambda)  a built function with an exec wrapper, under
                                         devkit's own Runtime API (devkit/runtime_api.py)

An invocation returns what the handler returned (parsed JSON), or a Streamed
answer when it streams. A streamed answer holds its instance, as in Lambda,
until it has been read to its end or cancelled.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from devkit.backends import Pidfiles
from devkit.lambda_worker import Channel
from devkit.template import FunctionSpec

WORKER = Path(__file__).with_name("lambda_worker.py")


class InvocationError(Exception):
    """The function failed: it raised, crashed or could not start."""

    def __init__(self, error: dict) -> None:
        super().__init__(error.get("errorMessage", "function failed"))
        self.error = error


class InvocationTimeout(InvocationError):
    pass


# What ends a streamed response's prelude (its JSON status and headers), as API Gateway reads it.
PRELUDE_END = b"\0" * 8
# API Gateway's limits on headers keep any real prelude far below this.
_PRELUDE_MAX = 1 << 20


class Streamed:
    """A streamed answer: its prelude (statusCode, headers), then its body's bytes as the function
    produces them. Iterating raises InvocationError if the function fails mid-stream.

    Read it to its end, or cancel() it once its reader is gone (which stops the function the way
    a failed write stops Lambda's runtime); until then its instance is busy."""

    def __init__(self, prelude: Any, body: Iterator[bytes], cancel: Callable[[], None]) -> None:
        self.prelude = prelude
        self._body, self._cancel = body, cancel
        self._open = True
        self._ended: list[Callable[[], None]] = []

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._body)
        except BaseException:  # its end, or a failure: the stream is over either way
            self._end()
            raise

    def cancel(self) -> None:
        """Stop the function producing it, and wait until it has stopped; nothing if it has ended."""
        if self._open:
            try:
                self._cancel()
            finally:
                self._end()

    def when_ended(self, callback: Callable[[], None]) -> None:
        self._ended.append(callback)

    def _end(self) -> None:
        if self._open:
            self._open = False
            for callback in self._ended:
                callback()


def open_stream(data: Iterator[bytes], cancel: Callable[[], None]) -> Streamed:
    """The streamed answer whose bytes `data` yields as the runtime posts them: its prelude is read
    (up to the 8 NUL bytes), its body left to be read. InvocationError if there is no prelude."""
    head = bytearray()
    for chunk in data:
        head += chunk
        prelude, found, rest = head.partition(PRELUDE_END)
        if found:
            try:
                parsed = json.loads(prelude)
            except ValueError:
                cancel()
                raise InvocationError({"errorType": "Runtime.InvalidStream",
                                       "errorMessage": "The streamed response's prelude is not JSON."}) from None
            return Streamed(parsed, _after(bytes(rest), data), cancel)
        if len(head) > _PRELUDE_MAX:
            cancel()
            break
    raise InvocationError({"errorType": "Runtime.InvalidStream",
                           "errorMessage": "The streamed response has no prelude (JSON and 8 NUL bytes)."})


def _after(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


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
        """Run the handler on `event`: what it returned (parsed JSON), or a Streamed answer, which
        holds the instance and its slot until it has been read to its end or cancelled."""
        limit = self.spec.timeout if timeout is None else min(timeout, self.spec.timeout)
        if not self._slots.acquire(timeout=limit):
            raise InvocationError({"errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded."})
        try:
            instance = self._acquire()
        except BaseException:
            self._slots.release()
            raise
        try:
            result = instance.invoke(event, timeout=limit)
        except BaseException:
            self._done(instance)
            raise
        if isinstance(result, Streamed):
            result.when_ended(lambda: self._done(instance))
        else:
            self._done(instance)
        return result

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

    def _done(self, instance: Instance) -> None:
        """An invocation is over: its instance and its slot are free."""
        self._release(instance)
        self._slots.release()

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
        self._channel = Channel(parent)
        try:
            init = self._channel.receive(60)
        except (EOFError, OSError):
            init = None
        init = init or {"ready": False, "error": {"errorMessage": "the function did not start"}}
        self.init_ms: float | None = init.get("init_ms")
        if not init.get("ready"):
            self.kill()
            raise InvocationError({"errorType": "Runtime.ImportModuleError", **init.get("error", {})})

    def invoke(self, event: dict, *, timeout: float) -> Any:
        request_id = str(uuid.uuid4())
        deadline = time.monotonic() + timeout
        try:
            self._channel.send({"event": event, "request_id": request_id,
                                "deadline_ms": int((time.time() + self._timeout_s) * 1000)})
        except OSError:  # its process is gone, and the socket with it
            self.kill()
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": "The function's process exited."}) from None
        reply = self._reply(deadline, timeout)
        if "chunk" in reply:
            return open_stream(self._chunks(reply, deadline, timeout), lambda: self._cancel(request_id, deadline, timeout))
        if "error" in reply:
            raise InvocationError(reply["error"])
        return reply["result"]

    def _chunks(self, message: dict, deadline: float, timeout: float) -> Iterator[bytes]:
        while "chunk" in message:
            yield base64.b64decode(message["chunk"])
            message = self._reply(deadline, timeout)
        if "error" in message:
            raise InvocationError(message["error"])

    def _cancel(self, request_id: str, deadline: float, timeout: float) -> None:
        """Tells the worker the stream's reader is gone, and waits for the stream's end: the worker
        stops it before its next chunk, or it had ended already (then the cancel is ignored)."""
        try:
            self._channel.send({"cancel": request_id})
            while "chunk" in self._reply(deadline, timeout):
                pass
        except OSError:
            self.kill()
        except InvocationError:
            pass  # it exited or overran, and is retired

    def _reply(self, deadline: float, timeout: float) -> dict:
        """The worker's next message; the worker is killed if it exits or overruns `deadline`."""
        try:
            reply = self._channel.receive(max(0.0, deadline - time.monotonic()))
        except (EOFError, OSError):
            self.kill()
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": "The function's process exited."}) from None
        if reply is None:
            self.kill()
            raise InvocationTimeout({"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {timeout:.2f} seconds"})
        return reply
