"""Anthropic's published response types, as strict checks of the Messages API's answers.

Anthropic publishes no OpenAPI description; its SDK's types are its published schema. These checks hold
a body to the pydantic model the `anthropic` SDK (pinned in requirements-dev.txt) decodes it into:

- `assert_message`: a `POST /v1/messages` answer, `anthropic.types.Message`;
- `assert_event`: one streamed event (the JSON of an SSE `data:` line): each member of
  `anthropic.types.RawMessageStreamEvent` by its `type` (message_start, content_block_start,
  content_block_delta, content_block_stop, message_delta, message_stop), `error` as
  `anthropic.types.ErrorResponse`, and `ping`, for which the SDK has no type (it drops the event by its
  SSE name) and which is held here to `{"type": "ping"}`;
- `assert_error`: an error answer, `anthropic.types.ErrorResponse`;
- `assert_count`: a `POST /v1/messages/count_tokens` answer, `anthropic.types.MessageTokensCount`.

The SDK's models are lenient by design: they allow keys they do not define, coerce types ("3" for an
int), and its client builds them without validating at all. So a body is checked here twice:

1. pydantic validates it as JSON against the model in strict mode: every required field present,
   every value of its type without coercion, every literal one of its values. The SDK's unions are
   tagged with its own `UnionDiscriminator`, which pydantic does not know, so pydantic tries every
   member; of the errors it then reports for each, only the member whose `type` literal matches the
   body's are kept (or one line saying that no member has that `type`).
2. the body is walked alongside the model's fields (choosing a union's member by its `type`), and any
   key the SDK type does not define is refused. Free-form values (a tool call's `input`) are not
   walked into.

Each violation names its path in the body (`$.content[0].text`).
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import types
import typing
from functools import cache
from typing import Any, Literal, Union

import pydantic
from anthropic.types import ErrorResponse, Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import ValidationError


class Ping(pydantic.BaseModel):
    """A streamed `ping` event. Not an SDK type: the SDK skips the event by its SSE name `ping`."""

    type: Literal["ping"]


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel)


def _strip(annotation: Any) -> Any:
    """The type inside any `Annotated[...]`."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any] | None:
    """A union's members (without `Annotated`), or None if `annotation` is no union."""
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [_strip(member) for member in typing.get_args(annotation)]
    return None


@cache
def _fields(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A model's fields by the key they take in a body (the alias, where one is set)."""
    if not model.__pydantic_complete__:
        model.model_rebuild()
    return {(field.alias or name): field for name, field in model.model_fields.items()}


def _tags(model: type[pydantic.BaseModel]) -> tuple[Any, ...]:
    """The values a model's `type` field may take, if it is a literal."""
    field = _fields(model).get("type")
    annotation = _strip(field.annotation) if field is not None else None
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


EVENTS: dict[str, type[pydantic.BaseModel]] = {
    **{tag: member for member in _members(RawMessageStreamEvent) or [] for tag in _tags(member)},
    "error": ErrorResponse,
    "ping": Ping,
}
"""Each streamed event's `type`, and the model it is held to."""


# --- 1. strict validation ------------------------------------------------------------------------

def _where(loc: tuple[Any, ...], body: Any, kind: str) -> tuple[str, list[tuple[str, str]]]:
    """An error's location as a path in the body, and the union members pydantic tried on the way
    (as (path of the union, member's tag) pairs). A part of the location is a key where the body has
    it (or, last, where the error is that a field is missing), an index in a list, and otherwise the
    tag of the union member that pydantic tried (a class name, `str`, `literal[...]`)."""
    path, node, tried = "$", body, []
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list):
            path, node = f"{path}[{part}]", node[part] if part < len(node) else None
        elif isinstance(node, dict) and (part in node or (last and kind == "missing")):
            path, node = f"{path}.{part}", node.get(part)
        else:
            tried.append((path, str(part)))
    return path, tried


def _strict_violations(model: type[pydantic.BaseModel], body: Any) -> list[str]:
    try:
        model.model_validate_json(json.dumps(body), strict=True)
        return []
    except ValidationError as error:
        errors = error.errors(include_url=False)
    located = []
    for err in errors:
        path, tried = _where(tuple(err["loc"]), body, err["type"])
        located.append((path, tried, err))
    # At each union, the members pydantic tried whose `type` literal is the body's: those whose `type`
    # field raised no error. Errors within the other members are left out.
    tried_at: dict[str, list[str]] = {}
    wrong_type_at: dict[str, set[str]] = {}
    expected_at: dict[str, list[str]] = {}
    for path, tried, err in located:
        for union, tag in tried:
            tried_at.setdefault(union, [])
            if tag not in tried_at[union]:
                tried_at[union].append(tag)
            if path == f"{union}.type" and tried[-1] == (union, tag) and err["type"] in ("literal_error", "missing"):
                wrong_type_at.setdefault(union, set()).add(tag)
                expected = (err.get("ctx") or {}).get("expected") if err["type"] == "literal_error" else None
                expected_at.setdefault(union, []).append(str(expected or tag))
    found, unmatched = [], []
    for path, tried, err in located:
        keep = True
        for union, tag in tried:
            own = [member for member in tried_at[union] if member not in wrong_type_at.get(union, set())]
            if not own and union not in unmatched:
                unmatched.append(union)
            keep = keep and tag in own
        if keep:
            member = f" (as {tried[-1][1]})" if tried else ""
            found.append(f"{path}: {err['msg']}{member}: {json.dumps(err.get('input'), default=str)[:200]}")
    for union in unmatched:
        found.append(f"{union}.type: missing or none of the types this union allows "
                     f"({', '.join(expected_at[union])})")
    return found


# --- 2. keys the type does not define -------------------------------------------------------------

_LISTS = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def _member(value: dict[str, Any], models: list[type[pydantic.BaseModel]]) -> type[pydantic.BaseModel] | None:
    """The union member a body is of: the one whose `type` literal is the body's, else the only model,
    else the one that defines the most of the body's keys."""
    by_tag = [model for model in models if "type" in value and value["type"] in _tags(model)]
    if by_tag:
        return by_tag[0]
    if len(models) == 1:
        return models[0]
    return max(models, key=lambda model: len(set(value) & set(_fields(model))), default=None)


def _unknown_keys(value: Any, annotation: Any, path: str) -> list[str]:
    annotation = _strip(annotation)
    members = _members(annotation)
    if members is not None:
        models = [member for member in members if _is_model(member)]
        if isinstance(value, dict) and models:
            chosen = _member(value, models)
            return _unknown_keys(value, chosen, path) if chosen is not None else []
        for member in members:  # a list or a mapping of models
            origin = typing.get_origin(member)
            if (isinstance(value, list) and origin in _LISTS) or (isinstance(value, dict) and origin in _MAPPINGS):
                return _unknown_keys(value, member, path)
        return []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_model(annotation) and isinstance(value, dict):
        fields, found = _fields(annotation), []
        for key, item in value.items():
            if key not in fields:
                owner = "the SDK's " if annotation.__module__.startswith("anthropic.") else ""
                found.append(f"{path}.{key}: not a field of {owner}{annotation.__name__} "
                             f"(it has {', '.join(sorted(fields))})")
            else:
                found += _unknown_keys(item, fields[key].annotation, f"{path}.{key}")
        return found
    if origin in _LISTS and isinstance(value, list) and args:
        return [found for index, item in enumerate(value) for found in _unknown_keys(item, args[0], f"{path}[{index}]")]
    if origin in _MAPPINGS and isinstance(value, dict) and len(args) == 2:
        return [found for key, item in value.items() for found in _unknown_keys(item, args[1], f"{path}.{key}")]
    return []


# --- the checks -----------------------------------------------------------------------------------

def violations(model: type[pydantic.BaseModel], body: Any) -> list[str]:
    """Each way `body` breaks the SDK model `model`, strictly: empty when it conforms."""
    if not isinstance(body, dict):
        return [f"$: not a JSON object but {json.dumps(body, default=str)[:200]}"]
    return _strict_violations(model, body) + _unknown_keys(body, model, "$")


def event_violations(event: Any, name: str | None = None) -> list[str]:
    """Each way a streamed event breaks the SDK type of its `type`; `name`, the SSE `event:` name,
    must then be that `type` too."""
    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in EVENTS:
        return [f"$.type: {json.dumps(kind)} is no event type of the SDK's (one of {', '.join(EVENTS)})"]
    found = violations(EVENTS[kind], event)
    if name is not None and name != kind:
        found.insert(0, f"the SSE event name {name!r} is not the event's type {kind!r}")
    return found


def _fail(found: list[str], what: str, body: Any) -> None:
    if found:
        shown = json.dumps(body, default=str)
        shown = shown if len(shown) <= 2000 else shown[:2000] + "..."
        raise AssertionError(f"{what} does not conform to Anthropic's SDK types:\n  " + "\n  ".join(found)
                             + f"\nbody: {shown}")


def assert_message(body: Any, what: str = "the message") -> None:
    """Fails, naming every violation, unless `body` is a `Message` (POST /v1/messages)."""
    _fail(violations(Message, body), what, body)


def assert_event(event: Any, name: str | None = None, what: str = "the event") -> None:
    """Fails, naming every violation, unless `event` (an SSE data line's JSON; `name` its `event:` line)
    is a streamed event of the SDK's."""
    _fail(event_violations(event, name), what, event)


def assert_error(body: Any, what: str = "the error") -> None:
    """Fails, naming every violation, unless `body` is an `ErrorResponse`."""
    _fail(violations(ErrorResponse, body), what, body)


def assert_count(body: Any, what: str = "the token count") -> None:
    """Fails, naming every violation, unless `body` is a `MessageTokensCount` (POST /v1/messages/count_tokens)."""
    _fail(violations(MessageTokensCount, body), what, body)
