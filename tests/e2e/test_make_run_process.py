"""The runner behind `make run` as a process: it stops when told, however often and under load, and a
runner killed outright neither keeps the next one from starting nor gets a bystander killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from devkit.backends import Pidfiles

from tests.support.make_run import Process, RunningApi, start_runner
from tests.support.paths import ROOT

DEADLINE = 120  # seconds: far beyond what any of this takes on a loaded machine


@pytest.fixture
def environment(tmp_path, ollama_url) -> dict[str, str]:
    """No MONGODB_URI or REDIS_URL: the runner starts a MongoDB and a Redis of its own."""
    return {"OLLAMA_URL": ollama_url, "INFERGATE_DATA_DIR": str(tmp_path / "data")}


@contextmanager
def under_load(running: RunningApi, clients: int = 16) -> Iterator[None]:
    """Clients asking GET /health over and over, each giving up on an answer after a second, from
    the moment some have been answered until the block ends (or the deadline passes)."""
    answered, done = [], threading.Event()
    deadline = time.monotonic() + DEADLINE

    def client() -> None:
        with httpx.Client(base_url=running.url, timeout=1) as http:
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    answered.append(http.get("/health").status_code)
                except httpx.HTTPError:
                    pass

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        while len(answered) < 3 * clients:
            assert time.monotonic() < deadline, "the runner answered no load"
            time.sleep(0.05)
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join()


def signal_until_it_exits(running: RunningApi) -> None:
    """Bursts of SIGINT and SIGTERM, in turn, to its process group (a terminal's Ctrl-C, a supervisor's
    SIGTERM, both again and again), until it has exited."""
    deadline = time.monotonic() + DEADLINE
    while running.process.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(running.process.pid, signal.SIGKILL)
            pytest.fail(f"the runner did not stop within {DEADLINE} s of being told to:\n{running.output()}")
        for number in [signal.SIGINT, signal.SIGTERM] * 25:
            running.interrupt(number)
        time.sleep(0.01)


def running_still(processes: list[Process]) -> list[Process]:
    return [process for process in processes if process.alive()]


@contextmanager
def cleaned_up(processes: list[Process]) -> Iterator[None]:
    """Whatever of `processes` a failing runner left running is killed at the end, not left to the machine."""
    try:
        yield
    finally:
        for process in running_still(processes):
            os.kill(process.pid, signal.SIGKILL)


def test_ctrl_c_and_sigterm_again_and_again_under_load_stop_it_cleanly(environment, tmp_path):
    running = start_runner(environment, tmp_path / "run.log")
    started = running.children()
    assert len(started) >= 3, started  # MongoDB, Redis and the functions' instances
    with cleaned_up(started):
        with under_load(running):
            started += running.children()  # instances started for the load too
            signal_until_it_exits(running)
        assert running.process.returncode == 0, running.output()
        assert "Stopped." in running.output()
        assert running_still(started) == []
    assert list((tmp_path / "data" / "pids").iterdir()) == []  # everything it recorded, it stopped


def test_a_runner_killed_outright_does_not_keep_the_next_one_from_starting(environment, tmp_path):
    killed = start_runner(environment, tmp_path / "killed.log")
    orphans = killed.children()
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.process.wait()
    with cleaned_up(orphans):
        assert running_still(orphans)  # MongoDB still holds the data folder

        again = start_runner(environment, tmp_path / "again.log")
        try:
            assert httpx.get(f"{again.url}/health", timeout=60).json()["status"] == "OK"
            assert running_still(orphans) == []
            assert "Stopped MongoDB (secantusdb) (pid" in again.output()
            assert "Stopped redis-server (pid" in again.output()
        finally:
            again.stop()
        assert again.process.returncode == 0, again.output()


def test_a_runner_still_running_keeps_its_data_folder(environment, tmp_path, mongo_uri, redis_url):
    environment |= {"MONGODB_URI": mongo_uri, "REDIS_URL": redis_url}
    first = start_runner(environment, tmp_path / "first.log")
    try:
        # `make run` a second time in the same checkout: the same data folder, the same port.
        second = subprocess.run([sys.executable, "-m", "devkit.run"], capture_output=True, text=True, timeout=DEADLINE,
                                env={**os.environ, **environment, "PORT": first.url.rsplit(":", 1)[1]})
        assert second.returncode == 1
        assert f"another runner (pid {first.process.pid}) is using" in second.stdout
        assert httpx.get(f"{first.url}/health", timeout=60).json()["status"] == "OK"  # untouched
    finally:
        first.stop()


def test_a_process_given_a_recorded_pid_later_is_left_alone(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        pids = tmp_path / "pids"
        pids.mkdir()
        # What an earlier runner wrote of a redis-server that had this pid before the bystander did.
        earlier = {"name": "redis-server", "pid": bystander.pid, "identity": "started earlier", "signal": 15}
        (pids / f"{bystander.pid}.json").write_text(json.dumps(earlier))
        assert Pidfiles(pids).claim() == []
        assert bystander.poll() is None
        assert not (pids / f"{bystander.pid}.json").exists()  # the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()


def test_a_setting_out_of_range_stops_the_runner_before_it_serves_naming_the_setting(tmp_path, mongo_uri, redis_url,
                                                                                      ollama_url):
    environment = {**os.environ, "MONGODB_URI": mongo_uri, "REDIS_URL": redis_url, "OLLAMA_URL": ollama_url,
                   "INFERGATE_DATA_DIR": str(tmp_path / "data"), "PORT": "0", "MAX_CONCURRENT_REQUESTS": "100000"}
    finished = subprocess.run([sys.executable, "-m", "devkit.run"], cwd=ROOT, env=environment, capture_output=True,
                              text=True, timeout=DEADLINE)
    assert finished.returncode == 1, finished.stdout[-2000:]
    assert "make run: MAX_CONCURRENT_REQUESTS: input should be less than or equal to 10000" in finished.stdout, (
        finished.stdout[-2000:])
    assert "listening" not in finished.stdout
