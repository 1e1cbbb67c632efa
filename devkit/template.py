"""Reads the parts of template.yaml that the local API needs.

Only what InferGate's template uses is understood: `!Ref` to parameters and
resources, `!GetAtt <Function>.Arn`, Globals for functions, `Api` events
(and their ResponseTransferMode), a REQUEST authorizer and gateway responses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from samtranslator.yaml_helper import yaml_parse


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    layers: tuple[Path, ...]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway's form, e.g. /v1/items/{id}
    function: str
    authorizer: str | None
    # ResponseTransferMode RESPONSE_STREAM: API Gateway streams the function's response.
    streams: bool = False

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if this route serves `method path`, else None."""
        if method != self.method and self.method != "ANY":
            return None
        found = re.match(_path_pattern(self.path), path)
        # API Gateway hands the function path parameters percent-decoded (the path itself as sent).
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None


def _path_pattern(path: str) -> str:
    """`/items/{id}` → a regex with named groups; `{name+}` spans slashes."""
    parts = []
    for piece in re.split(r"(\{\w+\+?\})", path):
        if piece.startswith("{"):
            name = piece.strip("{}+")
            parts.append(f"(?P<{name}>.+)" if piece.endswith("+}") else f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return "^" + "".join(parts) + "$"


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str
    payload_type: str


@dataclass(frozen=True)
class GatewayResponse:
    status_code: int | None
    headers: dict[str, str]
    template: str | None


@dataclass
class ApiSpec:
    stage: str
    routes: list[Route]
    authorizers: dict[str, Authorizer]
    gateway_responses: dict[str, GatewayResponse] = field(default_factory=dict)


@dataclass
class Template:
    root: Path
    functions: dict[str, FunctionSpec]
    api: ApiSpec


def load(path: Path, parameter_overrides: Mapping[str, str] | None = None) -> Template:
    # SAM's own reader: CloudFormation's short-form tags (!Ref, !GetAtt A.B, ...) as their long forms.
    document = yaml_parse(path.read_text())
    root = path.parent
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in (document.get("Parameters") or {}).items()
    }
    parameters.update(parameter_overrides or {})
    resources = document["Resources"]
    resolve = _Resolver(parameters, resources)

    function_globals = (document.get("Globals") or {}).get("Function") or {}
    functions: dict[str, FunctionSpec] = {}
    routes: list[Route] = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = {**function_globals, **resource.get("Properties", {})}
        environment = {
            **((function_globals.get("Environment") or {}).get("Variables") or {}),
            **((resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {}),
        }
        # Lambda tells its runtime the log format (LoggingConfig) through this variable.
        if (props.get("LoggingConfig") or {}).get("LogFormat"):
            environment["AWS_LAMBDA_LOG_FORMAT"] = props["LoggingConfig"]["LogFormat"]
        functions[name] = FunctionSpec(
            name=name,
            code_uri=root / props["CodeUri"],
            handler=props["Handler"],
            runtime=props.get("Runtime", ""),
            timeout=int(resolve(props.get("Timeout", 3))),
            memory_size=int(resolve(props.get("MemorySize", 128))),
            environment={key: resolve(value) for key, value in environment.items()},
            layers=tuple(root / resources[layer["Ref"]]["Properties"]["ContentUri"] for layer in props.get("Layers", [])),
        )
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "Api":
                continue
            event_props = event["Properties"]
            authorizer = (event_props.get("Auth") or {}).get("Authorizer", "DEFAULT")
            streams = event_props.get("ResponseTransferMode") == "RESPONSE_STREAM"
            routes.append(Route(event_props["Method"].upper(), event_props["Path"], name, authorizer, streams))

    api = next((r for r in resources.values() if r["Type"] == "AWS::Serverless::Api"), {})
    api_props = api.get("Properties", {})
    auth = api_props.get("Auth") or {}
    default_authorizer = auth.get("DefaultAuthorizer")
    routes = [
        replace(r, authorizer=default_authorizer if r.authorizer == "DEFAULT" else (None if r.authorizer == "NONE" else r.authorizer))
        for r in routes
    ]
    authorizers = {
        name: Authorizer(name=name, function=_function_named_by(spec["FunctionArn"]), payload_type=spec.get("FunctionPayloadType", "TOKEN"))
        for name, spec in (auth.get("Authorizers") or {}).items()
    }
    gateway_responses = {
        kind: GatewayResponse(
            status_code=int(spec["StatusCode"]) if "StatusCode" in spec else None,
            headers=((spec.get("ResponseParameters") or {}).get("Headers") or {}),
            template=(spec.get("ResponseTemplates") or {}).get("application/json"),
        )
        for kind, spec in (api_props.get("GatewayResponses") or {}).items()
    }
    return Template(
        root=root,
        functions=functions,
        api=ApiSpec(stage=resolve(api_props.get("StageName", "Prod")), routes=routes, authorizers=authorizers, gateway_responses=gateway_responses),
    )


def _function_named_by(arn: dict) -> str:
    """The function an authorizer's FunctionArn names: !GetAtt F.Arn, or !Ref F.Alias (its alias)."""
    if "Fn::GetAtt" in arn:
        return arn["Fn::GetAtt"][0]
    return arn["Ref"].split(".", 1)[0]


class _Resolver:
    def __init__(self, parameters: Mapping[str, str], resources: Mapping[str, Any]) -> None:
        self._parameters = parameters
        self._resources = resources

    def __call__(self, value: Any) -> str:
        if isinstance(value, dict) and "Ref" in value:
            name = value["Ref"]
            if name in self._parameters:
                return self._parameters[name]
            return name
        if isinstance(value, dict):
            raise ValueError(f"the local API cannot resolve {value!r}")
        return str(value)
