"""`make localstack-deploy`: what it deploys with, where it then finds the API, and that it stops
at once, saying why, when LocalStack is not running. (No Docker here: LocalStack itself, and the
deploy, run only where Docker does; see localstack/README.md.)"""

from __future__ import annotations

import subprocess
import sys

from devkit import localstack
from devkit.backends import free_port

from tests.support.paths import ROOT


def test_a_release_deploys_the_localstack_environment_of_samconfig():
    assert localstack.deploy_command("python") == ["python", "-m", "devkit.release", "--config-env", "localstack",
                                                    "--", "--no-fail-on-empty-changeset"]
    settings = localstack.deploy_settings()
    assert settings["stack_name"] and settings["confirm_changeset"] is False
    # The functions reach the stores by their names on compose's network, not the host's loopback.
    assert "mongodb://mongo:27017" in settings["parameter_overrides"]


def test_every_aws_call_goes_to_localstack_with_credentials_it_takes():
    environment = localstack.aws_environment("http://localhost:4566", {"PATH": "/usr/bin"})
    assert environment["AWS_ENDPOINT_URL"] == "http://localhost:4566"
    assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    assert environment["AWS_REGION"] == localstack.deploy_settings()["region"] and environment["PATH"] == "/usr/bin"
    own = localstack.aws_environment("http://localhost:4566", {"AWS_ACCESS_KEY_ID": "mine", "AWS_SECRET_ACCESS_KEY": "x"})
    assert own["AWS_ACCESS_KEY_ID"] == "mine"


def test_the_api_is_called_where_localstack_serves_it():
    url = localstack.served_url("https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod", "http://localhost:4566/")
    assert url == "http://localhost:4566/restapis/a1b2c3d4e5/prod/_user_request_"


def test_without_localstack_it_stops_before_deploying_and_says_why():
    nothing = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, "-m", "devkit.localstack", "--endpoint", nothing],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"LocalStack does not answer at {nothing}" in done.stderr and "localstack/README.md" in done.stderr
