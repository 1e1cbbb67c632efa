"""A release's fingerprint: the same build and values give the same one, and any change to a
file or a value gives another. The deploy passes the environment's values and the given ones
together, in a form `sam deploy` reads back exactly, and deploys the stamped copy of the build."""

from __future__ import annotations

import pytest
from devkit import release
from samcli.cli.types import CfnParameterOverridesType


@pytest.fixture
def build(tmp_path):
    (tmp_path / "ChatFunction").mkdir()
    (tmp_path / "ChatFunction" / "chat.py").write_text("def lambda_handler(event, context): ...\n")
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    return tmp_path


def test_the_same_build_and_values_are_the_same_release(build):
    assert release.fingerprint(build, {"OllamaUrl": "http://a"}) == release.fingerprint(build, {"OllamaUrl": "http://a"})
    assert len(release.fingerprint(build, {})) == 64


def test_a_new_value_alone_is_a_new_release(build):
    assert release.fingerprint(build, {"OllamaUrl": "http://a"}) != release.fingerprint(build, {"OllamaUrl": "http://b"})
    assert release.fingerprint(build, {}) != release.fingerprint(build, {"RateLimitRpm": "60"})


def test_a_changed_or_moved_file_is_a_new_release(build):
    before = release.fingerprint(build, {})
    (build / "ChatFunction" / "chat.py").write_text("def lambda_handler(event, context): return 1\n")
    changed = release.fingerprint(build, {})
    (build / "ChatFunction" / "chat.py").rename(build / "ChatFunction" / "main.py")
    assert len({before, changed, release.fingerprint(build, {})}) == 3


def test_the_stamped_template_written_into_the_build_is_no_part_of_it(build):
    before = release.fingerprint(build, {})
    (build / release.RELEASE_TEMPLATE).write_text("{}")
    assert release.fingerprint(build, {}) == before


def test_every_function_and_only_functions_get_the_release_as_their_versions_name():
    template = {"Resources": {"Chat": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "chat.h"}},
                              "Layer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {}}}}
    stamped = release.stamped(template, "ab" * 32)
    assert stamped["Resources"]["Chat"]["Properties"] == {"Handler": "chat.h", "AutoPublishCodeSha256": "ab" * 32}
    assert stamped["Resources"]["Layer"]["Properties"] == {} and "AutoPublishCodeSha256" not in str(template)


@pytest.mark.parametrize("value", ["http://10.0.1.20:11434", "", "a b", 'say "hi"', "back\\slash", "x=y,z", "[]"])
def test_sam_reads_the_values_back_exactly(value):
    parameters = {"OllamaUrl": value, "StageName": "dev"}
    assert dict(CfnParameterOverridesType().convert(release.overrides_text(parameters), None, None)) == parameters


def test_the_environments_values_and_the_given_ones_are_deployed_together():
    staging = release.environment_overrides("staging")
    assert staging["StageName"] == "staging" and staging["DeploymentType"].startswith("Canary")
    command = release.deploy_command("sam", "staging", release.BUILD / release.RELEASE_TEMPLATE,
                                     {**staging, "OllamaUrl": "http://model:11434"}, ["--no-confirm-changeset"])
    assert command[:6] == ["sam", "deploy", "--config-env", "staging", "--template-file",
                           str(release.BUILD / release.RELEASE_TEMPLATE)]
    passed = dict(CfnParameterOverridesType().convert(command[command.index("--parameter-overrides") + 1], None, None))
    assert passed == {**staging, "OllamaUrl": "http://model:11434"} and command[-1] == "--no-confirm-changeset"
    assert release.environment_overrides("no-such-environment") == {}
