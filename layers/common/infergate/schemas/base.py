from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Base of the shapes that cross InferGate's edges (pydantic).

    `defer_build` builds a schema's validator on first use rather than at
    import, which keeps it out of every function's cold start (init): a
    function pays only for the schemas its requests touch.
    """

    model_config = ConfigDict(defer_build=True)


class Closed(Schema):
    """A shape a caller sends: a field it does not define is refused, never ignored."""

    model_config = ConfigDict(defer_build=True, extra="forbid")


class Refused(ValueError):
    """A validator's refusal that is about one field, which it names: the error's `param`
    (api/app.py), wherever in the body the validator runs."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


Unsupported = Mapping[str, tuple[str, Callable[[Any], bool]]]  # field: why, and what asks for nothing


def without_unsupported(data: Any, unsupported: Unsupported) -> Any:
    """A body without the fields it cannot honour, when they ask for nothing (null always does);
    Refused, naming the first that asks for something."""
    if not isinstance(data, dict):
        return data
    for name, (why, asks_nothing) in unsupported.items():
        if data.get(name) is not None and not asks_nothing(data[name]):
            raise Refused(name, why)
    return {name: value for name, value in data.items() if name not in unsupported}


# A model's (or an alias's) name where a list of them is given: never a comma, which joins them.
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@-]+$")]
# Tokens a month of each model named: a team's, a key's.
ModelQuotaMap = dict[ModelName, Annotated[int, Field(ge=0, le=10**15)]]
