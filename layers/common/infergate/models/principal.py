"""Who is calling, as it travels from the authorizer to the handlers in API Gateway's
`requestContext.authorizer` map: flat scalars, every value a string when it arrives."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from pydantic import TypeAdapter

from infergate.domain.principal import Operator, Principal
from infergate.errors import InferGateError

USER, OPERATOR = "user", "operator"
# A caller refused for a while (too many failed authentications, or a store that is down):
# API Gateway's own responses cannot say 429 or 503 with Retry-After, so the authorizer lets
# the request through marked so, and the route refuses it.
REFUSED = "refused"


def authorizer_context(caller: Principal | Operator) -> dict[str, str | int | bool]:
    return {"kind": USER if isinstance(caller, Principal) else OPERATOR, **asdict(caller)}


def refused_context(code: str, message: str, *, status: int, retry_after: int) -> dict[str, str | int]:
    return {"kind": REFUSED, "status": status, "errorCode": code, "errorMessage": message, "retryAfter": retry_after}


def refusal_from(context: Mapping[str, Any]) -> InferGateError | None:
    """The error a refused caller's request gets, or None if `context` is not a refusal."""
    if context.get("kind") != REFUSED:
        return None
    error = InferGateError(str(context.get("errorMessage", "Refused.")), code=str(context.get("errorCode", "refused")),
                           headers={"Retry-After": str(context.get("retryAfter") or 1)})
    error.status = int(context.get("status") or 429)
    return error


def caller_from(context: Mapping[str, Any]) -> Principal | Operator:
    """The caller in `context`, or ValueError if it does not hold one."""
    kind = Principal if context.get("kind", USER) == USER else Operator
    return _adapter(kind).validate_python(
        {field.name: context[field.name] for field in fields(kind) if field.name in context})


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    # Built on first use, not at import: cold starts pay only for what they use.
    return TypeAdapter(kind)
