"""Benchmark: each function's cold start, beside minimal Powertools handlers.

Builds InferGate and two baselines (bench/coldstart/template.yaml) with
`sam build`, then starts each built function cold as `make run-lambda` does
(under the Lambda Runtime Interface Emulator with the awslambdaric runtime
client; the chat function, whose exec wrapper runs InferGate's own
streaming runtime, under devkit's Runtime API), sends it one event, and
reads its init duration: the one the emulator reports (`INIT REPORT(durationMs:
…)`), or, under devkit's Runtime API, from the process's start to its first
request for an event. Runs are interleaved across
functions, so the machine's noise falls on all of them alike; medians are
printed with each function's ratio to the baselines:

  hello-logger      a Logger and hello: the least a Powertools handler imports
  hello-powertools  SAM's "Hello World Example with Powertools" (sam init):
                    event handler, Logger, Tracer and Metrics

With `--against DIR` (`make coldstart AGAINST=DIR`) the functions of another
checkout (the commit before a change, say) are built and started too, in the
same interleaved runs, and each function's median is given as a ratio to its
namesake's there.

    .venv/bin/python bench/coldstart.py [--runs 5] [--against DIR]      (or: make coldstart)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit import backends, template  # noqa: E402
from devkit.functions import Instance, InvocationError  # noqa: E402
from devkit.runtime_api import lambda_instance  # noqa: E402

SAM = Path(sys.executable).with_name("sam")
RUNTIME_PYTHON = ROOT / ".lambda-runtime" / "bin" / "python"
BASELINES = ROOT / "bench" / "coldstart"


def build(template_path: Path, build_dir: Path, *, root: Path = ROOT) -> template.Template:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{SAM.parent}:{os.environ['PATH']}"}
    subprocess.run(
        [str(SAM), "build", "--template", str(template_path), "--build-dir", str(build_dir), "--base-dir", str(template_path.parent),
         # Built for this machine, whatever the template deploys to: the functions start here.
         "--parameter-overrides", f"Architecture={'arm64' if platform.machine().lower() in ('aarch64', 'arm64') else 'x86_64'}"],
        cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    return template.load(build_dir / "template.yaml")


def event_for(name: str) -> dict:
    from tests.support.lambda_events import authorizer_event, proxy_event

    if name == "AuthorizerFunction":
        return authorizer_event("GET", "/v1/usage")
    return proxy_event("GET", "/health")


def init_ms(function: template.FunctionSpec, environment: dict[str, str]) -> float:
    """One cold start: a fresh runtime, one event, the init duration it reports."""
    instance = lambda_instance(function, environment, runtime_python=RUNTIME_PYTHON)
    try:
        threading.Thread(target=_invoke_quietly, args=(instance, event_for(function.name)), daemon=True).start()
        if not instance.init_reported.wait(60):
            raise RuntimeError(f"{function.name}: no init report")
        return instance.init_ms or 0.0
    finally:
        instance.kill()


def _invoke_quietly(instance: Instance, event: dict) -> None:
    try:
        instance.invoke(event, timeout=10)
    except (InvocationError, OSError, ValueError):
        pass  # only the init report matters here


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout, whose functions start beside these")
    args = parser.parse_args()

    print("building InferGate and the baselines with sam build ...", flush=True)
    infergate = build(ROOT / "template.yaml", ROOT / ".aws-sam" / "build")
    baselines = build(BASELINES / "template.yaml", ROOT / ".aws-sam" / "coldstart-baselines")
    functions = {
        "hello-logger": baselines.functions["HelloLoggerFunction"],
        "hello-powertools": baselines.functions["HelloPowertoolsFunction"],
        **infergate.functions,
    }
    label = ""
    if args.against:
        other = args.against.resolve()
        label = " @" + subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=other, capture_output=True, text=True,
                                      check=True).stdout.strip()
        functions |= {f"{name}{label}": spec for name, spec in
                      build(other / "template.yaml", other / ".aws-sam" / "build", root=other).functions.items()}
    # Backends nobody listens on: the handlers answer quickly, and init never touches them.
    closed = backends.free_port()
    environment = {
        "MONGODB_URI": f"mongodb://127.0.0.1:{closed}/", "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "OLLAMA_URL": f"http://127.0.0.1:{closed}", "POWERTOOLS_TRACE_DISABLED": "true",
    }
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for run in range(args.runs):
        for name, function in functions.items():
            env = {**function.environment, **environment}
            samples[name].append(init_ms(function, env))
        print(f"  run {run + 1}/{args.runs} done", flush=True)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\ninit duration reported by the Lambda runtime, median of {args.runs} cold starts (ms)")
    print(f"{'function':<26} {'median':>8} {'min':>8} {'max':>8} {'x hello-logger':>15} {'x hello-powertools':>19}")
    for name, values in samples.items():
        print(f"{name:<26} {medians[name]:>8.1f} {min(values):>8.1f} {max(values):>8.1f} "
              f"{medians[name] / medians['hello-logger']:>15.2f} {medians[name] / medians['hello-powertools']:>19.2f}")
    if label:
        print(f"\neach function against its namesake{label}: " + ", ".join(
            f"{name} {medians[name] / medians[name + label]:.2f}x" for name in infergate.functions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
