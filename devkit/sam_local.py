"""For Docker users: the env-vars file `sam local start-api` reads, pointing the function
containers at services on the host.

Inside a container 127.0.0.1 is the container itself, so the MongoDB, Redis
and model-server URLs (the shell's MONGODB_URI, REDIS_URL and OLLAMA_URL, or
the usual local ports) are rewritten to `host.docker.internal`. Docker
Desktop defines that name; on Linux, `--add-host
host.docker.internal:host-gateway` does, and the services must listen on an
address the containers reach (the docker0 bridge, or 0.0.0.0), not on
127.0.0.1 alone. Every other setting set in the shell is passed on as it is.

    .venv/bin/python -m devkit.sam_local [--out FILE]     (or: make sam-local-env)

Writes the file and prints the command that uses it; samconfig.toml's
`[default.local_start_api]` names the same file and host mapping, so
`sam local start-api` alone picks them up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from devkit import template

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(".aws-sam") / "local-env.json"
HOST_ALIAS = "host.docker.internal"
ADD_HOST = f"{HOST_ALIAS}:host-gateway"
# The services a function reaches, and where they listen when the shell names none.
SERVICES = {"MONGODB_URI": "mongodb://127.0.0.1:27017/", "REDIS_URL": "redis://127.0.0.1:6379/0",
            "OLLAMA_URL": "http://127.0.0.1:11434"}
# A loopback host in a URL's netloc (after "//", "@" or "," of a host list), up to its port or end.
_LOOPBACK = re.compile(r"(?<=[/@,])(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\])(?=[:/,?]|$)")


def reachable_from_a_container(url: str) -> str:
    """`url` with every loopback host replaced by the host's name inside a container."""
    scheme, separator, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return scheme + separator + _LOOPBACK.sub(HOST_ALIAS, "/" + netloc)[1:] + slash + path


def env_vars(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """SAM's env-vars document: "Parameters" applies to every function."""
    settings = {name for function in template.load(ROOT / "template.yaml").functions.values()
                for name in function.environment}
    values = {name: environ[name] for name in sorted(settings) if name in environ}
    for name, default in SERVICES.items():
        values[name] = reachable_from_a_container(environ.get(name) or default)
    return {"Parameters": values}


def command(out: Path) -> list[str]:
    return ["sam", "local", "start-api", "--env-vars", str(out), "--add-host", ADD_HOST]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(env_vars(os.environ), indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; then:")
    print("  " + shlex.join(command(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
