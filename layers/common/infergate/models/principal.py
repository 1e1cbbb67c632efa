"""Who is calling, as it travels from the authorizer to the handlers in API Gateway's
`requestContext.authorizer` map: flat scalars, every value a string when it arrives."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from pydantic import TypeAdapter

from infergate.domain.principal import Operator, Principal

USER, OPERATOR = "user", "operator"
# A caller refused for a while (too many failed authentications): API Gateway's own 401
# cannot say 429 and Retry-After, so the authorizer lets the request through marked so, and
# the route refuses it.
REFUSED = "refused"


def authorizer_context(caller: Principal | Operator) -> dict[str, str | int | bool]:
    return {"kind": USER if isinstance(caller, Principal) else OPERATOR, **asdict(caller)}


def refused_context(code: str, message: str, *, retry_after: int) -> dict[str, str | int]:
    return {"kind": REFUSED, "errorCode": code, "errorMessage": message, "retryAfter": retry_after}


def caller_from(context: Mapping[str, Any]) -> Principal | Operator:
    """The caller in `context`, or ValueError if it does not hold one."""
    kind = Principal if context.get("kind", USER) == USER else Operator
    return _adapter(kind).validate_python(
        {field.name: context[field.name] for field in fields(kind) if field.name in context})


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    # Built on first use, not at import: cold starts pay only for what they use.
    return TypeAdapter(kind)
