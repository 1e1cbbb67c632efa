"""A release: what a deploy ships, fingerprinted, and the deploy that ships it.

    .venv/bin/python -m devkit.release [--config-env ENV] [KEY=VALUE ...] [-- SAM DEPLOY OPTIONS]
    (or: make deploy ENV=staging [OVERRIDES='OllamaUrl=http://...'])

Every function is served through its `live` alias, which CodeDeploy shifts to
each new version. SAM names a version after the function's code and its
properties as the template writes them, parameters unresolved, so a deploy
that changes only a setting (OllamaUrl, a rate limit, the subnets) would
update the functions but leave the aliases on versions with the old settings.
A release therefore names every version after its fingerprint: a SHA-256
digest of `sam build`'s output (each file's path and bytes) and of every
parameter value the deploy passes (samconfig.toml's environment, then the
ones given here). It is written into a copy of the built template
(AutoPublishCodeSha256 on each function, template.release.json), which is
what is deployed; the template itself carries none, so a bare `sam deploy`
never reuses an old release's name for new code.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
RELEASE_TEMPLATE = "template.release.json"


def fingerprint(build: Path, parameters: Mapping[str, str]) -> str:
    """The digest of the build's files and of the parameter values."""
    digest = hashlib.sha256()
    for path in sorted(path for path in build.rglob("*") if path.is_file() and path.name != RELEASE_TEMPLATE):
        digest.update(path.relative_to(build).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name, value in sorted(parameters.items()):
        digest.update(f"\0{name}={value}".encode())
    return digest.hexdigest()


def stamped(template: Mapping[str, Any], release: str) -> dict[str, Any]:
    """`template` with every function's versions named after `release`."""
    stamped_ = copy.deepcopy(dict(template))
    for resource in stamped_["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["AutoPublishCodeSha256"] = release
    return stamped_


def environment_overrides(config_env: str) -> dict[str, str]:
    """The parameter_overrides of samconfig.toml's `config_env`, as `sam deploy` reads them."""
    from samcli.cli.types import CfnParameterOverridesType

    settings = tomllib.loads((ROOT / "samconfig.toml").read_text()).get(config_env, {})
    text = settings.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    return dict(CfnParameterOverridesType().convert(text, None, None)) if text else {}


def overrides_text(parameters: Mapping[str, str]) -> str:
    """`--parameter-overrides`' value for `parameters`: it replaces the environment's list whole."""
    def quoted(value: str) -> str:
        return '"' + value.replace('"', '\\"') + '"'  # SAM unescapes \" and nothing else

    return " ".join(f"{name}={quoted(value)}" for name, value in parameters.items())


def deploy_command(sam: str, config_env: str, template: Path, parameters: Mapping[str, str],
                   extra: list[str]) -> list[str]:
    command = [sam, "deploy", "--config-env", config_env, "--template-file", str(template)]
    if parameters:
        command += ["--parameter-overrides", overrides_text(parameters)]
    return command + extra


def main(argv: list[str] | None = None) -> int:
    from samtranslator.yaml_helper import yaml_parse

    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="release", description=__doc__.split("\n")[0])
    parser.add_argument("--config-env", default="default")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if any("=" not in item for item in args.overrides):
        parser.error("each override is KEY=VALUE")
    given = dict(item.split("=", 1) for item in args.overrides)
    parameters = {**environment_overrides(args.config_env), **given}
    if not (BUILD / "template.yaml").exists():
        print("No build to release: run `make build` (sam build) first.", file=sys.stderr)
        return 2
    release = fingerprint(BUILD, parameters)
    template = BUILD / RELEASE_TEMPLATE
    template.write_text(json.dumps(stamped(yaml_parse((BUILD / "template.yaml").read_text()), release), indent=1))
    print(f"Release {release[:10]} ({args.config_env}): versions {{Function}}Version{release[:10]}", flush=True)
    sam = str(Path(sys.executable).with_name("sam"))
    return subprocess.run(deploy_command(sam, args.config_env, template, parameters, extra), cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
