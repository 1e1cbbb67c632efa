"""The GitHub Actions pipeline: actionlint finds nothing, and every samconfig.toml environment it
deploys with exists, with a stack name for its smoke test to find."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.support.paths import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def test_actionlint_finds_nothing():
    actionlint = Path(sys.executable).with_name("actionlint")
    done = subprocess.run([str(actionlint), *map(str, sorted(WORKFLOWS.glob("*.yml")))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_environment_the_pipeline_deploys_is_in_samconfig():
    pipeline = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    deployed = [job["with"]["config-env"] for job in pipeline["jobs"].values() if "deploy.yml" in job.get("uses", "")]
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert deployed == ["staging", "prod"]
    for environment in deployed:
        assert config[environment]["deploy"]["parameters"]["stack_name"], environment


def test_production_waits_for_staging_and_only_main_deploys():
    jobs = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]
    assert jobs["staging"]["needs"] == "test" and jobs["production"]["needs"] == "staging"
    assert "refs/heads/main" in jobs["staging"]["if"]
    for job in ("staging", "production"):
        assert jobs[job]["permissions"]["id-token"] == "write", "credentials come from OIDC, not stored keys"
