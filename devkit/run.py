"""`make run` and `make run-lambda`: the whole API on one machine, no Docker.

Starts what the API needs unless told where to find it (MONGODB_URI,
REDIS_URL, MODEL_SERVERS or OLLAMA_URL), serves template.yaml's API on
127.0.0.1:$PORT (default 3000), and on Ctrl-C or SIGTERM lets requests in
flight finish, then stops everything it started. `--servers N` (make run
SERVERS=N) starts N local model servers and routes across them as a pool;
REDIS_CLUSTER=N starts a Redis Cluster of N masters rather than one Redis.

Each function runs in as many instances as its requests in flight need, as
Lambda scales it, up to DEVKIT_MAX_INSTANCES (64) each.

  --runtime workers   (make run) functions from the source tree, each in worker processes
  --runtime emulator  (make run-lambda) the functions `sam build` produced, each under the
                      Lambda Runtime Interface Emulator with the awslambdaric runtime client,
                      or, for one with an exec wrapper (its own runtime, which may stream),
                      under devkit's Runtime API (devkit/runtime_api.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from devkit import backends, template
from devkit.functions import FunctionPool, InvocationError, WorkerInstance
from devkit.gateway import LocalApiGateway, LocalApiServer
from devkit.model_setup import ensure_model_runtime

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
LAMBDA_RUNTIME_PYTHON = ROOT / ".lambda-runtime" / "bin" / "python"
DATA = Path(os.environ.get("INFERGATE_DATA_DIR") or ROOT / ".data")
LOCAL_OLLAMA = "http://127.0.0.1:11434"
# Instances of each function started up front (DEVKIT_INSTANCES); with more than one, requests
# in a row go to each in turn, as to separate Lambda instances.
INSTANCES = max(1, int(os.environ.get("DEVKIT_INSTANCES") or 1))
# The most instances of one function at once: as Lambda scales a function to its requests in
# flight (up to the account's concurrency), so that a load test measures the gateway and its
# model servers, not requests queued in the local API.
MAX_INSTANCES = max(1, int(os.environ.get("DEVKIT_MAX_INSTANCES") or 64))


def say(message: str) -> None:
    print(message, flush=True)


def _ollama_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class StopRequest:
    """Ctrl-C or SIGTERM, waited for by the main thread.

    A Python signal handler runs in the main thread between any two of its bytecodes, also in
    the middle of another handler when signals come in quick succession: one that takes a lock
    (threading.Event.set does) can wait forever for a lock its own thread holds, and handlers
    that nest deep enough end in RecursionError. So the interpreter's C-level handler wakes the
    main thread through a socket (signal.set_wakeup_fd), and the Python-level one only makes
    every later signal ignored, which a handler does without locks and ends the nesting: once
    stopping has begun, another Ctrl-C changes nothing, and cannot kill the process on its way
    out either (at exit the interpreter restores the default handlers, not ignored signals).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._receiver, sender = socket.socketpair()
        sender.setblocking(False)
        self._sender = sender
        signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
        for number in self.SIGNALS:
            signal.signal(number, self.ignore_more)

    @classmethod
    def ignore_more(cls, *_: object) -> None:
        for number in cls.SIGNALS:
            signal.signal(number, signal.SIG_IGN)

    def wait(self) -> None:
        self._receiver.recv(1)


def start_model_servers(stack: ExitStack, logs: Path, pidfiles: backends.Pidfiles, count: int) -> list[dict]:
    """`count` local model servers (SmolLM2-135M-Instruct on llama.cpp, one request at a time
    each), as MODEL_SERVERS lists them."""
    ensure_model_runtime()
    model = os.environ.get("OLLAMA_MODEL", "smollm2:135m")
    servers = []
    for number in range(1, count + 1):
        name = "local" if count == 1 else f"local-{number}"
        say(f"Starting the local model server {name} (SmolLM2-135M-Instruct on llama.cpp) ...")
        server = backends.start_model_server(
            engine="llama", models=[model], extra=["--slots", "1"], pidfiles=pidfiles,
            log=stack.enter_context(open(logs / f"model-server{'' if count == 1 else f'-{number}'}.log", "a")))
        stack.callback(server.stop)
        servers.append({"name": name, "url": server.url, "slots": 1})
    return servers


def start_backends(stack: ExitStack, logs: Path, pidfiles: backends.Pidfiles, servers: int = 1) -> dict[str, str]:
    """The backend URLs, starting a local server for each one not configured (and `servers`
    model servers, as a pool, when more than one is asked for)."""
    urls: dict[str, str] = {}
    if os.environ.get("MONGODB_URI"):
        urls["MONGODB_URI"] = os.environ["MONGODB_URI"]
    else:
        say(f"Starting MongoDB (secantusdb), data in {DATA / 'mongodb'} ...")
        mongo = backends.start_mongo(DATA / "mongodb", log=stack.enter_context(open(logs / "mongodb.log", "a")),
                                     pidfiles=pidfiles)
        stack.callback(mongo.stop)
        urls["MONGODB_URI"] = mongo.url

    if os.environ.get("REDIS_URL"):
        urls["REDIS_URL"] = os.environ["REDIS_URL"]
    elif masters := cluster_masters():
        say(f"Starting a Redis Cluster of {masters} masters ...")
        folder = DATA / "redis-cluster"
        shutil.rmtree(folder, ignore_errors=True)  # a node keeps its last cluster's map: each run makes a new one
        cluster = backends.start_redis_cluster(folder, masters=masters, pidfiles=pidfiles,
                                               log=stack.enter_context(open(logs / "redis.log", "a")))
        stack.callback(cluster.stop)
        urls |= {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}
    else:
        say("Starting Redis ...")
        redis = backends.start_redis(log=stack.enter_context(open(logs / "redis.log", "a")), pidfiles=pidfiles)
        stack.callback(redis.stop)
        urls["REDIS_URL"] = redis.url

    if os.environ.get("MODEL_SERVERS") or os.environ.get("MODEL_SERVERS_SECRET"):
        say("Using the model servers MODEL_SERVERS names")
    elif servers > 1:
        urls["MODEL_SERVERS"] = json.dumps(start_model_servers(stack, logs, pidfiles, servers))
        urls |= bundled_model_tokenizer()
    elif os.environ.get("OLLAMA_URL"):
        urls["OLLAMA_URL"] = os.environ["OLLAMA_URL"]
    elif os.environ.get("OLLAMA_AUTODETECT", "1") != "0" and _ollama_answers(LOCAL_OLLAMA):
        say(f"Using the Ollama already running at {LOCAL_OLLAMA}")
        urls["OLLAMA_URL"] = LOCAL_OLLAMA
    else:
        urls["OLLAMA_URL"] = start_model_servers(stack, logs, pidfiles, 1)[0]["url"]
        urls |= bundled_model_tokenizer()
    return urls


def cluster_masters() -> int:
    """REDIS_CLUSTER=<n> (n masters, 3 or more) asks for a local Redis Cluster; true or false is the setting."""
    asked = os.environ.get("REDIS_CLUSTER", "")
    if not asked.isdigit():
        return 0
    if int(asked) < 3:
        raise RuntimeError("REDIS_CLUSTER=<n> starts a Redis Cluster of n masters: n must be 3 or more")
    return int(asked)


def bundled_model_tokenizer() -> dict[str, str]:
    """MODEL_TOKENIZERS naming the bundled SmolLM2's tokenizer, unless the shell names tokenizers itself."""
    if os.environ.get("MODEL_TOKENIZERS"):
        return {}
    from devkit.tokenizer_export import smollm2_tokenizer

    model = os.environ.get("OLLAMA_MODEL", "smollm2:135m")
    return {"MODEL_TOKENIZERS": json.dumps({model: str(smollm2_tokenizer(DATA / "tokenizers"))})}


def announce_backends(urls: dict[str, str], stack: ExitStack) -> None:
    """Where the backends listen, in the data folder while this runs: for `make admin-key`."""
    running = DATA / "backends.json"
    running.write_text(json.dumps(urls))
    stack.callback(lambda: running.unlink(missing_ok=True))


def function_environment(spec: template.FunctionSpec, overrides: dict[str, str]) -> dict[str, str]:
    """The template's variables, each replaced by the same-named one from the shell or a started backend,
    plus any POWERTOOLS_* setting from the shell (e.g. POWERTOOLS_LOGGER_LOG_EVENT=true) and, as
    `sam local` passes them, the shell's AWS credentials, region and endpoints (AWS_*): what the
    functions need to read a setting kept in Secrets Manager or Parameter Store."""
    environment = {name: overrides.get(name, os.environ.get(name, value)) for name, value in spec.environment.items()}
    environment.update({name: value for name, value in os.environ.items()
                        if name.startswith("POWERTOOLS_") or (name.startswith("AWS_") and not name.startswith("AWS_LAMBDA_"))})
    # No X-Ray daemon runs locally.
    environment.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    return environment


def pools_for(
    runtime: str, overrides: dict[str, str], stack: ExitStack, pidfiles: backends.Pidfiles,
) -> tuple[template.Template, dict[str, FunctionPool]]:
    if runtime == "emulator":
        from devkit.runtime_api import lambda_instance

        if not (BUILD / "template.yaml").exists():
            raise RuntimeError("no build found: run `sam build` (make run-lambda does) first")
        spec = template.load(BUILD / "template.yaml")

        def start(function: template.FunctionSpec):
            return lambda: lambda_instance(
                function, function_environment(function, overrides), runtime_python=LAMBDA_RUNTIME_PYTHON, log=sys.stdout,
                pidfiles=pidfiles,
            )
    else:
        spec = template.load(ROOT / "template.yaml")

        def start(function: template.FunctionSpec):
            return lambda: WorkerInstance(function, function_environment(function, overrides), pidfiles=pidfiles)

    pools = {name: FunctionPool(function, start(function), max_instances=MAX_INSTANCES, rotate=INSTANCES > 1)
             for name, function in spec.functions.items()}
    for pool in pools.values():
        stack.callback(pool.close)
    return spec, pools


def serve(
    port: int, runtime: str, overrides: dict[str, str], stack: ExitStack, pidfiles: backends.Pidfiles,
) -> LocalApiServer:
    spec, pools = pools_for(runtime, overrides, stack, pidfiles)
    with ThreadPoolExecutor(max_workers=len(pools)) as executor:
        for name, init_ms in zip(pools, executor.map(lambda pool: pool.warm(INSTANCES), pools.values()), strict=True):
            say(f"  {name}: ready" + (f" (init {init_ms:.0f} ms)" if init_ms is not None else ""))
    server = LocalApiServer(("127.0.0.1", port), LocalApiGateway(spec.api, pools))
    server.start()
    stack.callback(server.stop)  # runs first on exit: in-flight requests finish before the rest stops
    return server


def claim_data_folder(stack: ExitStack) -> backends.Pidfiles:
    """The data folder's pidfiles, for this runner alone, after stopping what a runner that was
    killed outright left running (its MongoDB would otherwise hold the data folder's lock)."""
    pidfiles = backends.Pidfiles(DATA / "pids")
    for line in pidfiles.claim():
        say(line)
    stack.callback(pidfiles.release)
    return pidfiles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", choices=["workers", "emulator"], default="workers")
    parser.add_argument("--servers", type=int, default=int(os.environ.get("SERVERS") or 1),
                        help="local model servers to start and route across (make run SERVERS=3)")
    arguments = parser.parse_args()
    runtime = arguments.runtime
    port = int(os.environ.get("PORT", "3000"))
    stop = StopRequest()
    logs = DATA / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        try:
            pidfiles = claim_data_folder(stack)
            overrides = start_backends(stack, logs, pidfiles, arguments.servers)
            announce_backends(overrides, stack)
            say("Starting the functions" + (" under the Lambda runtime emulator" if runtime == "emulator" else "") + " ...")
            server = serve(port, runtime, overrides, stack, pidfiles)
        except (RuntimeError, OSError, InvocationError) as error:
            say(f"make run: {error}")
            return 1
        say(f"\nInferGate is listening on {server.url}  (backend logs in {logs})")
        say("Try:")
        say(f"  curl -s -X POST {server.url}/v1/register -H 'content-type: application/json' -d '{{\"email\": \"ada@example.com\"}}'")
        say(f"  curl -s -X POST {server.url}/v1/chat -H 'x-api-key: <api_key from above>' -H 'content-type: application/json' -d '{{\"prompt\": \"Say hello\"}}'")
        say(f"  curl -s {server.url}/v1/usage -H 'x-api-key: <api_key>'")
        say(f"Or open the console, and sign in with the api_key: {server.url}/console")
        say("Ctrl-C stops it.\n")
        stop.wait()
        say("Stopping: letting requests in flight finish ...")
    say("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
