"""Starts and stops the services the API needs: MongoDB, Redis, a model server.

Each runs as a child process on a free port and is stopped with the
process that started it. A runner that is killed outright (SIGKILL) stops
nothing, so what it starts is also written down (Pidfiles) for the next
runner with the same data folder to stop.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
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


class Pidfiles:
    """What a runner started, one file a process in `folder`, removed once the process has stopped.

    A runner claims the folder for as long as it runs; the next one to claim it stops whatever
    the files name that is still running, after checking that each is the very process written
    down: a later process given the same pid (another start time or command line) is left alone.
    Every process recorded leads a process group of its own (start_new_session), so stopping the
    group also stops what it started in turn (a runtime under its emulator).
    """

    RUNNER = "runner.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def claim(self) -> list[str]:
        """Take the folder for this process; stop what an earlier runner left running. What was
        stopped, one line each; RuntimeError if a runner still running holds the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        holder = _read(self.folder / self.RUNNER)
        if holder and holder.get("pid") != os.getpid() and identity(holder["pid"]) == holder.get("identity"):
            raise RuntimeError(f"another runner (pid {holder['pid']}) is using {self.folder.parent}: stop it first, "
                               "or give this one a data folder of its own (INFERGATE_DATA_DIR)")
        stopped = [line for path in sorted(self.folder.glob("[0-9]*.json")) if (line := _stop_leftover(path))]
        _write(self.folder / self.RUNNER, {"pid": os.getpid(), "identity": identity(os.getpid())})
        return stopped

    def release(self) -> None:
        (self.folder / self.RUNNER).unlink(missing_ok=True)

    def record(self, process: subprocess.Popen, name: str, stop_signal: int = signal.SIGTERM) -> None:
        _write(self._path(process), {"name": name, "pid": process.pid, "identity": identity(process.pid),
                                     "signal": int(stop_signal)})

    def forget(self, process: subprocess.Popen) -> None:
        self._path(process).unlink(missing_ok=True)

    def _path(self, process: subprocess.Popen) -> Path:
        return self.folder / f"{process.pid}.json"


def identity(pid: int) -> str | None:
    """What tells a process from a later one given the same pid: when it started (since which boot)
    and what it runs. None if no such process runs, or it is not ours to look at. Not its command
    line: a server may rewrite that (redis-server does)."""
    if not _PROC.exists():
        return _identity_from_ps(pid)
    try:
        started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # the name before ")" may hold spaces
        executable = os.readlink(f"/proc/{pid}/exe")  # fails for a zombie too: it runs nothing any more
    except OSError:
        return None
    return f"{_boot()} {started} {executable}"


_PROC = Path("/proc/self/stat")


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _identity_from_ps(pid: int) -> str | None:
    # macOS: ps gives the start time to the second and the executable.
    found = subprocess.run(["ps", "-o", "lstart=,comm=", "-p", str(pid)], capture_output=True, text=True)
    return found.stdout.strip() or None


def _stop_leftover(path: Path) -> str | None:
    """Stops the process `path` names if it is still the one recorded there; a line saying so."""
    recorded = _read(path)
    stopped = None
    if recorded and identity(recorded["pid"]) == recorded.get("identity"):
        _stop_group(recorded["pid"], recorded["identity"], recorded.get("signal", signal.SIGTERM))
        stopped = f"Stopped {recorded['name']} (pid {recorded['pid']}), left running by a runner that did not stop it"
    path.unlink(missing_ok=True)
    return stopped


def _stop_group(pid: int, recorded: str, stop_signal: int, timeout: float = 10) -> None:
    for number in (stop_signal, signal.SIGKILL):
        try:
            os.killpg(pid, number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if identity(pid) != recorded:
                return
            time.sleep(0.05)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, content: dict) -> None:
    # Whole or not at all, so a runner killed while writing leaves no half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content))
    partial.replace(path)


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    stop_signal: int = signal.SIGTERM
    _log: IO[Any] | None = field(default=None, repr=False)
    pidfiles: Pidfiles | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pidfiles:
            self.pidfiles.forget(self.process)


def start_mongo(
    storage: str | Path, *, log: IO[Any] | None = None, port: int | None = None, pidfiles: Pidfiles | None = None,
) -> Service:
    """A secantusdb server (the MongoDB wire protocol on WiredTiger). `storage` may be ':memory:'.
    Run by devkit.secantus_server: secantusd-py, sweeping expired documents every 5 s, not 60 (it says why)."""
    port = port or free_port()
    if str(storage) != ":memory:":
        storage = Path(storage).resolve()  # the server runs in another folder (below)
        storage.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "devkit.secantus_server", "--host", "127.0.0.1", "--port", str(port),
               "--storage-path", str(storage)]
    process = _spawn(command, stdout=log, stderr=log or subprocess.DEVNULL,
                     cwd=Path(__file__).resolve().parent.parent)  # where devkit imports from
    return _started(Service("MongoDB (secantusdb)", f"mongodb://127.0.0.1:{port}/", process, signal.SIGINT, log, pidfiles),
                    port, 60)


def start_redis(*, log: IO[Any] | None = None, port: int | None = None, pidfiles: Pidfiles | None = None) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server), or set REDIS_URL")
    port = port or free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
    process = _spawn(command, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    return _started(Service("redis-server", f"redis://127.0.0.1:{port}/0", process, signal.SIGTERM, log, pidfiles),
                    port, 20)


@dataclass
class RedisCluster:
    """A Redis Cluster on this machine: redis-server's own cluster mode, `nodes` masters, no replicas.
    Its `url` names one node; a cluster client finds the others (REDIS_CLUSTER=true)."""

    nodes: list[Service]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_redis_cluster(folder: Path, *, masters: int = 3, log: IO[Any] | None = None,
                        pidfiles: Pidfiles | None = None) -> RedisCluster:
    """`masters` redis-servers in cluster mode, their slots shared out by `redis-cli --cluster create`;
    returned once every node says the cluster is ok. `folder` keeps each node's cluster config."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed for a Redis Cluster (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    nodes = []
    for port in _cluster_ports(masters):
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                   "--cluster-enabled", "yes", "--cluster-config-file", str(folder / f"nodes-{port}.conf"),
                   "--cluster-node-timeout", "5000", "--protected-mode", "yes"]
        process = _spawn(command, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL, cwd=folder)
        nodes.append(_started(Service("redis-server (cluster)", f"redis://127.0.0.1:{port}/0", process, signal.SIGTERM,
                                      log, pidfiles), port, 20))
    cluster = RedisCluster(nodes)
    addresses = [node.url.removeprefix("redis://").removesuffix("/0") for node in nodes]
    created = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        cluster.stop()
        raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]}{created.stderr[-500:]}")
    _wait_for_cluster(cli, addresses)
    return cluster


def _cluster_ports(count: int) -> list[int]:
    """Ports whose cluster bus (the port + 10000) is a port too, and free."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 40000)
        if port not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_cluster(cli: str, addresses: list[str], timeout: float = 30) -> None:
    """Returns once every node reports cluster_state:ok (slots assigned and agreed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [subprocess.run([cli, "-h", host, "-p", port, "cluster", "info"], capture_output=True, text=True,
                                 timeout=10).stdout for host, port in (address.split(":") for address in addresses)]
        if all("cluster_state:ok" in state for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError("the Redis Cluster did not come up")


def start_model_server(
    *, engine: str, models: list[str], log: IO[Any] | None = None, port: int | None = None, extra: list[str] | None = None,
    pidfiles: Pidfiles | None = None,
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
    return _started(Service(f"the model server ({engine})", f"http://127.0.0.1:{port}", process, signal.SIGTERM, log,
                            pidfiles), port, 120)


def _spawn(command: list[str], **options: Any) -> subprocess.Popen:
    # In a session of its own, a backend ignores the terminal's Ctrl-C and is stopped
    # by whoever started it, after the requests that need it have finished.
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True, **options)


def _started(service: Service, port: int, timeout: float) -> Service:
    """`service` once it listens on `port`; recorded in its pidfiles from the start, so that
    a runner killed while waiting for it still leaves word of it."""
    if service.pidfiles:
        service.pidfiles.record(service.process, service.name, service.stop_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            service.stop()
            raise RuntimeError(f"{service.name} exited with status {service.process.returncode} before it was ready")
        if port_open("127.0.0.1", port):
            return service
        time.sleep(0.1)
    service.stop(timeout=0)
    raise RuntimeError(f"{service.name} was not ready after {timeout:.0f} s")
