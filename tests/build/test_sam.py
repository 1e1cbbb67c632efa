"""The template passes SAM's linter and builds into functions that carry what they import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

SAM = str(Path(sys.executable).with_name("sam"))
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_the_template_is_valid_and_lint_clean():
    result = subprocess.run([SAM, "validate", "--lint"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_lays_out_functions_and_layers(tmp_path):
    build = tmp_path / "build"
    result = subprocess.run(
        [SAM, "build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (build / "ChatFunction" / "chat.py").exists()
    assert (build / "AuthorizerFunction" / "authorizer.py").exists()
    assert (build / "CommonLayer" / "python" / "infergate" / "domain" / "chat.py").exists()
    for package in ("aws_lambda_powertools", "pydantic", "pymongo", "redis", "jwt"):
        assert (build / "DependenciesLayer" / "python" / package).is_dir(), package
