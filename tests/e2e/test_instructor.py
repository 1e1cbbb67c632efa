"""instructor, unchanged, against the gateway over HTTP, in TOOLS and JSON modes. It runs in a
virtualenv of its own (see requirements-e2e-instructor.txt), made by `make test`."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.support.paths import ROOT

PYTHON = ROOT / ".e2e" / "instructor" / "bin" / "python"
CLIENT = ROOT / "tests" / "e2e" / "instructor_client.py"


@pytest.fixture(scope="module")
def gateway(gateway_of):
    return gateway_of("instructor")


@pytest.mark.parametrize("mode", ["TOOLS", "JSON", "JSON_SCHEMA"])
def test_instructor_gets_the_model_it_asked_for_and_is_metered(gateway, mode):
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: `make test` makes it (make .e2e/instructor/bin/.installed)")
    key = gateway.register()
    ran = subprocess.run([str(PYTHON), str(CLIENT), f"{gateway.url}/v1", key["api_key"], mode],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["person"] == {"name": "xxxx", "age": 1}
    usage = httpx.get(f"{gateway.url}/v1/usage", headers={"x-api-key": key["api_key"]}).json()
    assert (usage["requests"], usage["tokens_used"]) == (1, answer["total_tokens"])
