"""OpenAI's published response schemas (tests/data/openai/), as JSON Schema validators.

The schemas are component schemas of an OpenAPI document: they refer to each other as
`#/components/schemas/<Name>`, and some still mark a value that may be null with OpenAPI 3.0's
`nullable: true`, which JSON Schema does not know. Here `nullable` becomes a type union (and
`null` joins an `enum`), or, beside a `$ref` or where no `type` is given, an `anyOf` with
`{"type": "null"}`. One (`CompoundFilter`, a filter made of filters) refers to itself the way of
JSON Schema draft 2019-09, with `$recursiveAnchor: true` and `$recursiveRef: "#"`, which draft 2020-12
no longer knows; that becomes a plain `$ref` to the component itself. Other OpenAPI keywords
(`discriminator`, `example`, `x-...`) are only annotations and are left as they are. The whole set of
components is one resource of a `referencing` registry, so every `$ref` resolves within it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.paths import ROOT

COMPONENTS = ROOT / "tests" / "data" / "openai" / "openapi-components.json"
_URI = "urn:openai-openapi"
_PREFIX = "#/components/schemas/"


def without_nullable(schema: Any) -> Any:
    """The schema with every OpenAPI `nullable: true` turned into JSON Schema's way of allowing null."""
    if isinstance(schema, list):
        return [without_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: without_nullable(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") is not True:
        return converted
    kind = converted.get("type")
    if "$ref" in converted or kind is None:
        return {"anyOf": [converted, {"type": "null"}]}
    kinds = kind if isinstance(kind, list) else [kind]
    converted["type"] = kinds if "null" in kinds else [*kinds, "null"]
    if "enum" in converted and None not in converted["enum"]:
        converted["enum"] = [*converted["enum"], None]
    return converted


def without_recursive_ref(schema: Any, name: str) -> Any:
    """The component schema `name` with draft 2019-09's self-reference (`$recursiveAnchor: true` on it,
    `$recursiveRef: "#"` within it) turned into a `$ref` to the component itself."""
    if isinstance(schema, list):
        return [without_recursive_ref(item, name) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: without_recursive_ref(value, name) for key, value in schema.items()
                 if key not in ("$recursiveAnchor", "$recursiveRef")}
    if "$recursiveRef" in schema:
        if schema["$recursiveRef"] != "#":
            raise ValueError(f"{name}: unexpected $recursiveRef {schema['$recursiveRef']!r}")
        converted["$ref"] = f"{_PREFIX}{name}"
    return converted


@cache
def schemas() -> dict[str, Any]:
    """The vendored component schemas by name, in JSON Schema terms."""
    document = json.loads(COMPONENTS.read_text())
    return {name: without_recursive_ref(without_nullable(schema), name)
            for name, schema in document["components"]["schemas"].items()}


@cache
def _registry() -> Registry:
    document = {"components": {"schemas": schemas()}}
    for schema in schemas().values():
        Draft202012Validator.check_schema(schema)
    return Registry().with_resource(_URI, Resource(contents=document, specification=DRAFT202012))


def validator(name: str) -> Draft202012Validator:
    """A validator of the component schema `name` (e.g. "CreateChatCompletionResponse")."""
    if name not in schemas():
        raise KeyError(f"no vendored schema named {name!r}")
    return Draft202012Validator({"$ref": f"{_URI}{_PREFIX}{name}"}, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def stream_event_schema(event: Any, union: str = "ResponseStreamEvent") -> str:
    """The name of the member of the event union `union` whose `type` is the event's, so that a streamed
    event is held to its own schema (and a failure names its own fields rather than every branch of the
    union); the union itself when no member has that `type`."""
    kind = event.get("type") if isinstance(event, dict) else None
    for branch in schemas()[union].get("anyOf", []) + schemas()[union].get("oneOf", []):
        name = branch.get("$ref", "").removeprefix(_PREFIX)
        tag = schemas().get(name, {}).get("properties", {}).get("type", {})
        if kind is not None and (tag.get("enum") == [kind] or tag.get("const") == kind):
            return name
    return union


def _rule(name: str, schema_path: Iterable[Any]) -> str:
    """Where a failed rule is written: the component schema holding it and the path within it.
    (jsonschema leaves the `$ref`s it followed out of an error's schema path; they are followed here
    wherever the path goes on past one.)"""
    component, node, inside = name, schemas()[name], []
    for key in schema_path:
        while isinstance(node, dict) and key not in node and isinstance(node.get("$ref"), str):
            component = node["$ref"].removeprefix(_PREFIX)
            node, inside = schemas()[component], []
        node = node[key] if isinstance(node, (dict, list)) else None
        inside.append(str(key))
    return f"{component}/{'/'.join(inside)}"


def _leaves(error: ValidationError) -> Iterable[ValidationError]:
    """An error, or for an anyOf/oneOf that no branch satisfied, what failed within each branch."""
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def violations(name: str, instance: Any) -> list[str]:
    """Each way `instance` breaks the schema `name`: where in the instance, what is wrong, and which
    rule of which schema says so. Empty when it conforms."""
    found = []
    for error in sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        line = f"{error.json_path}: {error.message} (rule {_rule(name, error.absolute_schema_path)})"
        if error.context:
            branches = "; ".join(f"{leaf.json_path}: {leaf.message} (rule {_rule(name, leaf.absolute_schema_path)})"
                                 for leaf in _leaves(error))
            line += f" [branches: {branches}]"
        found.append(line)
    return found


def assert_conforms(name: str, instance: Any, what: str = "") -> None:
    """Fails, naming every violation, unless `instance` conforms to OpenAI's schema `name`."""
    found = violations(name, copy.deepcopy(instance))
    if found:
        shown = json.dumps(instance)
        shown = shown if len(shown) <= 2000 else shown[:2000] + "..."
        raise AssertionError(f"{what or 'the response'} does not conform to OpenAI's {name}:\n  "
                             + "\n  ".join(found) + f"\nresponse: {shown}")
