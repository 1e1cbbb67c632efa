"""Runs `make run` (or `make run-lambda`) the way a developer does, and talks to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from devkit.backends import free_port, port_open

from tests.support.paths import ROOT


@dataclass
class RunningApi:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> None:
        """Ctrl-C from a terminal: SIGINT to the whole foreground process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def start_make_run(environment: dict[str, str], log: Path, *, ready_timeout: float = 900, target: str = "run") -> RunningApi:
    port = free_port()
    env = {**os.environ, **environment, "PORT": str(port)}
    for name in ("MONGODB_URI", "REDIS_URL", "OLLAMA_URL"):
        if name not in environment:
            env.pop(name, None)
    handle = log.open("w")
    process = subprocess.Popen(
        ["make", "-s", target], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )
    running = RunningApi(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}:\n{running.output()}")
        if port_open("127.0.0.1", port) and "listening" in running.output():
            return running
        time.sleep(0.2)
    running.stop()
    raise AssertionError(f"make run was not ready in {ready_timeout} s:\n{running.output()}")
