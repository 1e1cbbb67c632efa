from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base of InferGate's models.

    `defer_build` builds a model's validator on first use rather than at
    import, which keeps it out of every function's cold start (init): a
    function pays only for the models its requests touch.
    """

    model_config = ConfigDict(defer_build=True)


class Closed(Model):
    """A shape a caller sends: a field it does not define is refused, never ignored."""

    model_config = ConfigDict(defer_build=True, extra="forbid")
