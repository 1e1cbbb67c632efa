"""Runs `make run` (or `make run-lambda`), or the runner behind it, the way a developer does, and talks to it
over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from devkit.backends import free_port, port_open

from tests.support import services
from tests.support.paths import ROOT


@dataclass(frozen=True)
class Process:
    """A process as the system knows it: a pid, and the start time that tells it from a later one
    given the same pid."""

    pid: int
    started: str

    def alive(self) -> bool:
        started = _start_time(self.pid)
        return started == self.started


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if there is no such process or it
    is a zombie, which runs nothing any more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name before it may hold spaces
    return None if fields[0] == "Z" else fields[19]


def children_of(pid: int) -> list[Process]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(Process(int(entry.name), fields[19]))
    return found


@dataclass
class RunningApi:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def interrupt(self, number: int = signal.SIGINT) -> None:
        """Ctrl-C from a terminal (SIGINT to the whole foreground process group), or SIGTERM to it;
        nothing once it has exited, so a later process given the same group id is never signalled."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, number)

    def stop(self, timeout: float = 60) -> None:
        self.interrupt()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def children(self) -> list[Process]:
        """What the runner started and still runs (with make in between, what make started)."""
        return children_of(self.process.pid)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def new_user(self) -> dict:
        """A user registered just now: the registration's answer (api_key, user_id, key_id, ...)."""
        response = httpx.post(f"{self.url}/v1/register", json={"email": f"user-{uuid.uuid4().hex[:12]}@example.com"})
        assert response.status_code == 201, response.text
        return response.json()


def start_make_run(environment: dict[str, str], log: Path, *, ready_timeout: float = 900, target: str = "run") -> RunningApi:
    return _start(["make", "-s", target], environment, log, ready_timeout)


def start_runner(environment: dict[str, str], log: Path, *, ready_timeout: float = 900) -> RunningApi:
    """The runner `make run` starts, with no make in between: its exit status and its children are its own."""
    return _start([sys.executable, "-m", "devkit.run"], environment, log, ready_timeout)


def _start(command: list[str], environment: dict[str, str], log: Path, ready_timeout: float) -> RunningApi:
    port = free_port()
    # Tests of other things share one address (127.0.0.1) and often one Redis: the limits per
    # address (failed authentications, registrations) stay out of their way unless a test sets them.
    per_address = {"AUTH_FAILURES_PER_MINUTE": "1000000", "REGISTER_RATE_LIMIT_PER_HOUR": "1000000"}
    env = {**os.environ, **per_address, **environment, "PORT": str(port)}
    for name in ("MONGODB_URI", "REDIS_URL", "OLLAMA_URL"):
        if name not in environment:
            env.pop(name, None)
    if "REDIS_URL" in environment and "REDIS_CLUSTER" not in environment:
        env["REDIS_CLUSTER"] = str(services.redis_is_cluster()).lower()  # the suite's Redis, a cluster or not
    handle = log.open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    running = RunningApi(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{' '.join(command)} exited with {process.returncode}:\n{running.output()}")
        if port_open("127.0.0.1", port) and "listening" in running.output():
            return running
        time.sleep(0.2)
    running.stop()
    raise AssertionError(f"{' '.join(command)} was not ready in {ready_timeout} s:\n{running.output()}")
