"""Starts and stops the services the API needs: MongoDB, Redis, a model server.

Each runs as a child process on a free port and is stopped with the
process that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports free now: held open together while chosen, so that no two are
    the same (one after another, the system may well hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    stop_signal: int = signal.SIGTERM
    _log: IO[Any] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s")


def start_mongo(storage: str | Path, *, log: IO[Any] | None = None, port: int | None = None) -> Service:
    """A secantusdb server (the MongoDB wire protocol on WiredTiger). `storage` may be ':memory:'."""
    port = port or free_port()
    if str(storage) != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    command = [_script("secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage)]
    process = _spawn(command, stdout=log, stderr=log or subprocess.DEVNULL)
    _wait_until(lambda: port_open("127.0.0.1", port), process, "MongoDB (secantusdb)", 60)
    return Service("mongodb", f"mongodb://127.0.0.1:{port}/", process, signal.SIGINT, log)


def start_redis(*, log: IO[Any] | None = None, port: int | None = None) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server), or set REDIS_URL")
    port = port or free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
    process = _spawn(command, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    _wait_until(lambda: port_open("127.0.0.1", port), process, "redis-server", 20)
    return Service("redis", f"redis://127.0.0.1:{port}/0", process, signal.SIGTERM, log)


def start_model_server(
    *, engine: str, models: list[str], log: IO[Any] | None = None, port: int | None = None, extra: list[str] | None = None,
) -> Service:
    """The Ollama-compatible server from devkit.ollama, in its own process."""
    port = port or free_port()
    command = [sys.executable, "-m", "devkit.ollama", "--host", "127.0.0.1", "--port", str(port), "--engine", engine]
    for model in models:
        command += ["--model", model]
    command += extra or []
    process = _spawn(
        command, stdout=log, stderr=log, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    _wait_until(lambda: port_open("127.0.0.1", port), process, f"the model server ({engine})", 120)
    return Service("ollama", f"http://127.0.0.1:{port}", process, signal.SIGTERM, log)


def _spawn(command: list[str], **options: Any) -> subprocess.Popen:
    # In a session of its own, a backend ignores the terminal's Ctrl-C and is stopped
    # by whoever started it, after the requests that need it have finished.
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True, **options)


def _script(name: str) -> str:
    """A console script installed beside this interpreter (the virtualenv's bin/)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)
