"""The documentation holds: the configuration reference is what devkit.config_reference writes from
the settings and template.yaml now, every alarm the template makes has its runbook, and the site
builds with `mkdocs build --strict` (a broken link, a missing anchor or a page left out of the nav
fails it)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from devkit import config_reference
from samtranslator.yaml_helper import yaml_parse

from tests.support.paths import ROOT

MKDOCS = ROOT / ".docs" / "bin" / "mkdocs"
RUNBOOKS = ROOT / "docs" / "operating" / "runbooks.md"
DASHBOARDS = ROOT / "docs" / "operating" / "dashboards-and-alarms.md"


def alarm_names() -> list[str]:
    """The alarms template.yaml makes, each named `<stack>-<name>`: the names after the stack's."""
    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    names = []
    for resource in resources.values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            named = resource["Properties"]["AlarmName"]
            names.append(re.fullmatch(r"\$\{AWS::StackName\}-(.+)", named["Fn::Sub"]).group(1))
    return names


def test_the_configuration_reference_is_what_the_settings_and_the_template_say_now():
    assert config_reference.PAGE.read_text() == config_reference.page(), "run `make config-reference`"


def test_every_setting_without_a_parameter_has_a_description():
    """A setting's meaning comes from its parameter's Description, or else from its field."""
    for field in config_reference.Settings.model_fields.values():
        if not config_reference.parameter_of(field.alias):
            assert field.description, f"{field.alias} has no parameter: give its field a description"


def test_every_alarm_has_its_runbook_and_its_line_on_the_dashboards_page():
    runbooks, dashboards = RUNBOOKS.read_text(), DASHBOARDS.read_text()
    assert alarm_names(), "template.yaml makes no alarm"
    for name in alarm_names():
        assert f"## `<stack>-{name}` {{#{name}}}" in runbooks, f"docs/operating/runbooks.md has no section for {name}"
        assert f"(runbooks.md#{name})" in dashboards, f"the dashboards page does not link {name}'s runbook"


def test_the_site_builds_strictly(tmp_path):
    if not MKDOCS.exists():
        pytest.skip(f"{MKDOCS.relative_to(ROOT)} is not installed: `make .docs/.installed` (make test does it)")
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
