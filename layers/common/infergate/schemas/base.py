from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
