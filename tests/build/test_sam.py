"""The template passes SAM's linter, translates into the integrations the functions expect, and
builds into functions that carry what they import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.sam import translated

SAM = str(Path(sys.executable).with_name("sam"))
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_the_template_is_valid_and_lint_clean():
    result = subprocess.run([SAM, "validate", "--lint"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_finds_nothing_not_even_a_warning():
    # sam validate --lint fails on errors; cfn-lint itself also reports warnings and notes.
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "template.yaml"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_sam_build_lays_out_functions_and_layers(tmp_path):
    build = tmp_path / "build"
    result = subprocess.run(
        [SAM, "build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (build / "ChatFunction" / "chat.py").exists()
    # Lambda runs the exec wrapper itself: it must stay executable in the package.
    assert os.access(build / "ChatFunction" / "stream-runtime", os.X_OK)
    assert (build / "CommonLayer" / "python" / "infergate" / "runtime.py").exists()
    assert (build / "AuthorizerFunction" / "authorizer.py").exists()
    assert (build / "CommonLayer" / "python" / "infergate" / "domain" / "meter.py").exists()
    for package in ("aws_lambda_powertools", "pydantic", "pymongo", "redis", "jwt"):
        assert (build / "DependenciesLayer" / "python" / package).is_dir(), package


def test_exactly_the_routes_the_chat_function_streams_get_api_gateways_streaming_integration(monkeypatch):
    from tests.support.functions import load_handler

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    paths = translated()["Resources"]["InferGateApi"]["Properties"]["Body"]["paths"]
    integrations = {path: operation["x-amazon-apigateway-integration"] for path, item in paths.items()
                    for operation in item.values()}
    streaming = {path for path, integration in integrations.items() if integration.get("responseTransferMode")}

    assert streaming == load_handler("chat/chat.py").STREAMED
    for path in streaming:
        assert integrations[path]["responseTransferMode"] == "STREAM"
        # The function's `live` alias (AutoPublishAlias), through its streaming invocation path.
        assert integrations[path]["uri"]["Fn::Sub"].endswith("/2021-11-15/functions/${ChatFunctionAliaslive}"
                                                             "/response-streaming-invocations")
