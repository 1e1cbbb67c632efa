"""How a request that its schema refuses is told so: 400 invalid_request, a short sentence naming
each bad field without echoing the input, and `param` naming the first, as OpenAI's API does."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from infergate.domain.errors import InvalidRequest

if TYPE_CHECKING:
    from infergate.schemas.base import Schema

S = TypeVar("S", bound="Schema")


def validated(validate: Callable[[Any], S], data: Any) -> S:
    """`validate(data)`, or 400 invalid_request naming the field at fault and saying what is wrong."""
    from pydantic import ValidationError  # imported already, by the schema that validates

    try:
        return validate(data)
    except ValidationError as error:
        raise InvalidRequest(describe_validation_errors(error.errors()), param=_field_at_fault(error.errors())) from None


_FIELD = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,6})$")


# What pydantic adds to a location to say which member of a union it tried (or a tag: a tool's kind): not a field.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "custom", "built_in", "unknown"})


def _field_at_fault(errors: Any) -> str | None:
    """The first invalid field's path, as OpenAI's `param` gives it (messages.0.content); a
    validator's Refused names the field within where it ran."""
    from infergate.schemas.base import Refused  # imported already, by the schema that refused

    errors = list(errors)
    # Of a union's branches, the one a validator refused names the field; else the first error does.
    for error in [*(e for e in errors if isinstance((e.get("ctx") or {}).get("error"), Refused)), *errors[:1]]:
        parts = [str(part) for part in error.get("loc", ()) if _FIELD.match(str(part))]
        refused = (error.get("ctx") or {}).get("error")
        if isinstance(refused, Refused):
            parts.append(refused.field)
        return ".".join(part for part in parts if part not in _UNION_MEMBERS) or None
    return None


def describe_validation_errors(errors: Any) -> str:
    """A short, human sentence naming each bad field, never echoing the input itself."""
    parts = []
    for error in list(errors)[:5]:
        if error.get("type") == "json_invalid":
            return "The request body must be valid JSON."
        location = ".".join(str(part) for part in error.get("loc", ()) if _FIELD.match(str(part)))
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "The request is invalid."
