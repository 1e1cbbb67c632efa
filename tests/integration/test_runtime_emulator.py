"""Built functions under the Lambda Runtime Interface Emulator with awslambdaric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from devkit.functions import FunctionPool, InvocationError, InvocationTimeout
from devkit.runtime_emulator import EmulatorInstance
from devkit.template import FunctionSpec

from tests.support.paths import ROOT

# make test prepares both: the runtime's virtualenv and sam build's output.
RUNTIME_PYTHON = ROOT / ".lambda-runtime" / "bin" / "python"
BUILD = ROOT / ".aws-sam" / "build" / "template.yaml"

HANDLERS = '''
import os, sys, time

def describe(event, context):
    found = {}
    for name in ("pydantic", "infergate", "devkit", "helper"):
        try:
            __import__(name)
            found[name] = True
        except ImportError:
            found[name] = False
    return {"imports": found, "cwd": os.getcwd(), "timeout": os.environ["AWS_LAMBDA_FUNCTION_TIMEOUT"],
            "memory": context.memory_limit_in_mb, "remaining_ms": context.get_remaining_time_in_millis(),
            "setting": os.environ.get("SETTING"), "pid": os.getpid()}

def fail(event, context):
    raise ValueError("no good")

def slow(event, context):
    time.sleep(float(event.get("seconds", 5)))
    return {"pid": os.getpid()}
'''


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    code = tmp_path / "Function"
    code.mkdir()
    (code / "fn.py").write_text(HANDLERS)
    layer = tmp_path / "Layer" / "python"
    layer.mkdir(parents=True)
    (layer / "helper.py").write_text("VALUE = 1\n")
    return tmp_path


def spec(function_dir: Path, handler: str, timeout: int = 3) -> FunctionSpec:
    return FunctionSpec(name="Probe", code_uri=function_dir / "Function", handler=f"fn.{handler}", runtime="python3.12",
                        timeout=timeout, memory_size=256, environment={}, layers=(function_dir / "Layer",))


def pool(function_dir: Path, handler: str, timeout: int = 3) -> FunctionPool:
    function = spec(function_dir, handler, timeout)
    return FunctionPool(function, lambda: EmulatorInstance(function, {"SETTING": "on"}, runtime_python=RUNTIME_PYTHON))


def test_only_the_build_and_its_layers_are_importable(function_dir):
    functions = pool(function_dir, "describe")
    try:
        result = functions.invoke({})
    finally:
        functions.close()
    assert result["imports"] == {"pydantic": False, "infergate": False, "devkit": False, "helper": True}
    assert result["cwd"] == str(function_dir / "Function")
    assert (result["timeout"], str(result["memory"]), result["setting"]) == ("3", "256", "on")
    assert 0 < result["remaining_ms"] <= 3000


def test_a_handler_error_comes_back_as_lambdas_error_payload(function_dir):
    functions = pool(function_dir, "fail")
    try:
        with pytest.raises(InvocationError) as failed:
            functions.invoke({})
    finally:
        functions.close()
    assert (failed.value.error["errorType"], failed.value.error["errorMessage"]) == ("ValueError", "no good")


def test_a_timed_out_function_gets_a_fresh_runtime_next_time(function_dir):
    function = spec(function_dir, "slow", timeout=1)
    instance = EmulatorInstance(function, {}, runtime_python=RUNTIME_PYTHON)
    try:
        with pytest.raises(InvocationTimeout):
            instance.invoke({"seconds": 5}, timeout=1)
        first = instance.invoke({"seconds": 0}, timeout=1)
        second = instance.invoke({"seconds": 0}, timeout=1)
    finally:
        instance.kill()
    assert first["pid"] == second["pid"]  # a new runtime after the timeout, then kept warm
    assert instance.init_ms is not None


def test_the_built_chat_function_starts_under_its_own_runtime_and_streams_its_answer(tmp_path):
    from devkit import template
    from devkit.runtime_api import RuntimeApiInstance, lambda_instance

    chat = template.load(BUILD).functions["ChatFunction"]
    instance = lambda_instance(chat, {**chat.environment, "REDIS_URL": "redis://127.0.0.1:1/0"},
                               runtime_python=RUNTIME_PYTHON)
    try:
        from tests.support.lambda_events import proxy_event

        assert isinstance(instance, RuntimeApiInstance), "its exec wrapper runs InferGate's runtime, not awslambdaric"
        streamed = instance.invoke(proxy_event("POST", "/v1/chat", resource="/v1/chat", body={"prompt": "hi"}),
                                   timeout=10)
        body = b"".join(streamed)
    finally:
        instance.kill()
    # No authorizer context reached it: the handler itself answers 401, shaped like every error,
    # in the prelude and body of a streamed response.
    assert streamed.prelude["statusCode"] == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert instance.init_ms and instance.init_ms > 0
