"""For Docker users: the env-vars file `make sam-local-env` writes for `sam local start-api`, and
the command line that uses it."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from devkit import sam_local

from tests.support.paths import ROOT


def test_loopback_hosts_become_the_hosts_name_inside_a_container():
    rewrite = sam_local.reachable_from_a_container
    assert rewrite("mongodb://127.0.0.1:27017/") == "mongodb://host.docker.internal:27017/"
    assert rewrite("mongodb://u:p@localhost:1,127.0.0.1:2/db?replicaSet=rs0") == (
        "mongodb://u:p@host.docker.internal:1,host.docker.internal:2/db?replicaSet=rs0")
    assert rewrite("http://[::1]:11434") == "http://host.docker.internal:11434"
    assert rewrite("redis://cache.internal:6379/0") == "redis://cache.internal:6379/0"
    assert rewrite("http://127.0.0.1.nip.io:11434") == "http://127.0.0.1.nip.io:11434"


def test_the_file_carries_the_services_and_the_settings_the_shell_sets_and_nothing_else():
    document = sam_local.env_vars({"REDIS_URL": "redis://localhost:6380/1", "RATE_LIMIT_RPM": "7", "HOME": "/root"})
    values = document["Parameters"]
    assert values["REDIS_URL"] == "redis://host.docker.internal:6380/1"
    assert values["MONGODB_URI"] == "mongodb://host.docker.internal:27017/"
    assert values["OLLAMA_URL"] == "http://host.docker.internal:11434"
    assert values["RATE_LIMIT_RPM"] == "7" and "HOME" not in values


def test_make_writes_it_and_names_a_command_this_sam_cli_accepts(tmp_path):
    out = tmp_path / "local-env.json"
    done = subprocess.run([sys.executable, "-m", "devkit.sam_local", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "OLLAMA_URL": "http://localhost:9"})
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["Parameters"]["OLLAMA_URL"] == "http://host.docker.internal:9"
    printed = done.stdout.splitlines()[-1].split()
    assert printed == ["sam", "local", "start-api", "--env-vars", str(out), "--add-host", sam_local.ADD_HOST]

    options = subprocess.run([str(Path(sys.executable).with_name("sam")), "local", "start-api", "--help"],
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "SAM_CLI_TELEMETRY": "0"}).stdout
    assert "--env-vars" in options and "--add-host" in options


def test_samconfig_makes_sam_local_start_api_use_the_same_file_and_host():
    parameters = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["local_start_api"]["parameters"]
    assert parameters["env_vars"] == str(sam_local.DEFAULT_OUT)
    assert parameters["add_host"] == [sam_local.ADD_HOST]
