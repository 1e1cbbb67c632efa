"""The least JSON a schema admits, chosen the same way every time: what the deterministic
engine answers for a `format`, and the arguments of the tool calls it makes."""

from __future__ import annotations

import json
from typing import Any


def example_of(schema: Any, root: Any = None) -> Any:
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        return example_of(_resolve(schema["$ref"], root), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf", "allOf"):
        if schema.get(combined):
            return example_of(schema[combined][0], root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: example_of(sub, root) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_of(schema.get("items") or {}, root) for _ in range(max(1, int(schema.get("minItems", 1))))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(1, int(schema.get("minLength", 4)))


def _resolve(reference: str, root: Any) -> Any:
    node = root
    for part in reference.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def schema_in(messages: list[dict]) -> dict:
    """The first JSON schema (an object with "properties") written in the messages, as a model
    asked for JSON follows the schema its prompt shows; {} if there is none."""
    decoder = json.JSONDecoder()
    for message in messages:
        text = str(message.get("content", ""))
        start = text.find("{")
        while start != -1:
            try:
                found, _ = decoder.raw_decode(text, start)
            except ValueError:
                found = None
            if isinstance(found, dict) and isinstance(found.get("properties"), dict):
                return found
            start = text.find("{", start + 1)
    return {}
