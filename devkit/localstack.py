"""`make localstack-deploy`: the build released to LocalStack (devkit/release.py) with
samconfig.toml's `localstack` environment, then `make smoke` against the URL LocalStack serves it at.

    .venv/bin/python -m devkit.localstack [--endpoint URL]     (LOCALSTACK_URL, default http://localhost:4566)

`sam deploy` itself talks to LocalStack: boto3 sends every AWS call to
AWS_ENDPOINT_URL (which is all the `samlocal` wrapper adds for a stack like this
one: zip functions, no nested stacks or images). LocalStack takes any
credentials; `test` is used unless the shell has its own. LocalStack serves a
REST API at <endpoint>/restapis/<api id>/<stage>/_user_request_, the id and the
stage taken from the stack's ApiUrl output. See localstack/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "localstack"
DEFAULT_ENDPOINT = "http://localhost:4566"


def deploy_settings() -> dict:
    """samconfig.toml's deploy parameters for the LocalStack environment."""
    return tomllib.loads((ROOT / "samconfig.toml").read_text())[CONFIG_ENV]["deploy"]["parameters"]


def aws_environment(endpoint: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The shell's environment, every AWS call sent to LocalStack, in the environment's region."""
    region = deploy_settings().get("region", "us-east-1")
    return {**environ, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": environ.get("AWS_ACCESS_KEY_ID") or "test",
            "AWS_SECRET_ACCESS_KEY": environ.get("AWS_SECRET_ACCESS_KEY") or "test",
            "SAM_CLI_TELEMETRY": "0"}


def deploy_command(python: str) -> list[str]:
    """A release (devkit/release.py) of the build with the LocalStack environment."""
    return [python, "-m", "devkit.release", "--config-env", CONFIG_ENV, "--", "--no-fail-on-empty-changeset"]


def served_url(api_url: str, endpoint: str) -> str:
    """Where LocalStack serves the API whose AWS URL (the ApiUrl output) is `api_url`."""
    parts = urlsplit(api_url)
    api_id, stage = parts.hostname.split(".")[0], parts.path.strip("/")
    return f"{endpoint.rstrip('/')}/restapis/{api_id}/{stage}/_user_request_"


def localstack_answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_localstack/health", timeout=5) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def stack_output(name: str, environment: Mapping[str, str]) -> str:
    import boto3

    session = boto3.session.Session(aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
                                    region_name=environment["AWS_REGION"])
    cloudformation = session.client("cloudformation", endpoint_url=environment["AWS_ENDPOINT_URL"])
    (stack,) = cloudformation.describe_stacks(StackName=deploy_settings()["stack_name"])["Stacks"]
    return next(output["OutputValue"] for output in stack["Outputs"] if output["OutputKey"] == name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localstack-deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("LOCALSTACK_URL") or DEFAULT_ENDPOINT)
    args = parser.parse_args(argv)
    if not localstack_answers(args.endpoint):
        print(f"LocalStack does not answer at {args.endpoint}: start it first (localstack/README.md), "
              "or set LOCALSTACK_URL.", file=sys.stderr)
        return 2
    environment = aws_environment(args.endpoint, os.environ)
    if subprocess.run(deploy_command(sys.executable), cwd=ROOT, env=environment).returncode != 0:
        return 1
    url = served_url(stack_output("ApiUrl", environment), args.endpoint)
    print(f"InferGate on LocalStack: {url}", flush=True)
    from infergate_cli import smoke

    return smoke.main(["--url", url])


if __name__ == "__main__":
    sys.exit(main())
