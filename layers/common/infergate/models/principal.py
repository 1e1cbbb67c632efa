from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict

from infergate.models.base import Model


class Principal(Model):
    """Who is calling and what their plan allows, as the authorizer established it.

    It travels from the authorizer to the handlers in API Gateway's
    `requestContext.authorizer` map, which holds only flat scalars and
    reaches the handler with every value as a string.
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    key_id: str
    plan: str
    monthly_token_quota: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    max_output_tokens: int

    def to_authorizer_context(self) -> dict[str, str | int]:
        return self.model_dump()

    @classmethod
    def from_authorizer_context(cls, context: Mapping[str, Any]) -> Principal:
        return cls.model_validate({name: context.get(name) for name in cls.model_fields})
