"""The principal as it travels from the authorizer to the handlers, in API Gateway's
`requestContext.authorizer` map: flat scalars, every value a string when it arrives."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from pydantic import TypeAdapter

from infergate.domain.principal import Principal


def authorizer_context(principal: Principal) -> dict[str, str | int]:
    return asdict(principal)


def principal_from(context: Mapping[str, Any]) -> Principal:
    """The principal in `context`, or ValueError if it does not hold one."""
    return _adapter().validate_python({field.name: context.get(field.name) for field in fields(Principal)})


@functools.cache
def _adapter() -> TypeAdapter[Principal]:
    # Built on first use, not at import: cold starts pay only for what they use.
    return TypeAdapter(Principal)
