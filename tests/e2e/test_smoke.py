"""`make smoke` against `make run` and `make run-lambda`: every step passes on a working gateway,
with a given key too, and a target that is not InferGate fails it."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.paths import ROOT

STEPS = ("register", "chat", "models", "stream", "usage", "wrong key", "unknown route")


@pytest.fixture(scope="module", params=["run", "run-lambda"])
def gateway(request, gateway_of):
    return gateway_of(f"smoke-{request.param}", target=request.param)


def smoke(**variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "smoke", *(f"{name}={value}" for name, value in variables.items())],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_step_passes_against_a_working_gateway(gateway):
    done = smoke(API_URL=gateway.url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for step in STEPS:
        assert any(line.split()[:2] == ["ok", step.split()[0]] for line in lines), (step, done.stdout)
    assert lines[-1] == "passed"


def test_a_given_key_is_used_instead_of_registering(gateway):
    done = smoke(API_URL=gateway.url, API_KEY=gateway.register()["api_key"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: a key was given" in done.stdout


def test_what_is_not_an_infergate_fails_with_the_step_that_broke(ollama_url):
    done = smoke(API_URL=ollama_url)
    assert done.returncode != 0
    assert "FAIL register" in done.stdout and done.stdout.splitlines()[-1] == "FAILED"
