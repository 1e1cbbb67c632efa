"""template.yaml as SAM's translator turns it into CloudFormation, for the build tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.support.paths import ROOT


def translated(parameters: Mapping[str, str] | None = None, *, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The template (template.yaml, or the document given) translated with these parameter values
    (the rest their defaults), code locations aside. SAM resolves some parameters itself;
    CloudFormation resolves the rest."""
    import copy

    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = copy.deepcopy(dict(template)) if template is not None else yaml_parse((ROOT / "template.yaml").read_text())
    for resource in template["Resources"].values():
        for location in ("CodeUri", "ContentUri"):
            if not str(resource.get("Properties", {}).get(location, "s3://")).startswith("s3://"):
                resource["Properties"][location] = "s3://bucket/code.zip"

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    return transform(template, {"AWS::Region": "us-east-1", **(parameters or {})}, NoManagedPolicies())
