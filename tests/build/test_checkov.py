"""checkov's policy checks over template.yaml: nothing fails, the template is read whole, and
every check skipped is skipped with its reason (on the resource, or in .checkov.yaml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache

import pytest
import yaml

from tests.support.paths import ROOT

CHECKOV = ROOT / ".checkov" / "bin" / "checkov"


@cache
def report() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make test` makes it (make .checkov/.installed)")
    done = subprocess.run([str(CHECKOV), "--config-file", ".checkov.yaml", "-f", "template.yaml", "-o", "json"],
                          cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_checkov_reads_the_whole_template_and_nothing_fails():
    summary, failed = report()["summary"], report()["results"]["failed_checks"]
    # An unreadable template is no failure to checkov: it scans nothing, and exits 0.
    assert summary["parsing_errors"] == 0 and summary["resource_count"] >= 30, summary
    assert [(check["check_id"], check["resource"], check["check_name"]) for check in failed] == []


def test_every_check_skipped_on_a_resource_says_why():
    skipped = report()["results"]["skipped_checks"]
    assert skipped, "the resources' own skips are read"
    assert [(check["check_id"], check["resource"]) for check in skipped
            if len(check["check_result"].get("suppress_comment") or "") < 40] == []


def test_every_check_skipped_everywhere_says_why_in_the_config():
    text = (ROOT / ".checkov.yaml").read_text()
    for check in yaml.safe_load(text)["skip-check"]:
        assert re.search(rf"\n  # [^\n]+\n(?:  #[^\n]*\n)*  - {check}\n", text), f"{check}: no reason just above it"
