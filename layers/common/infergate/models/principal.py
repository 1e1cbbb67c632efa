from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pydantic import ConfigDict

from infergate.domain.principal import Principal
from infergate.models.base import Model


class AuthorizerContext(Model):
    """The principal as it travels from the authorizer to the handlers, in API Gateway's
    `requestContext.authorizer` map: flat scalars, every value a string when it arrives."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    key_id: str
    plan: str
    monthly_token_quota: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    max_output_tokens: int

    @classmethod
    def of(cls, principal: Principal) -> dict[str, str | int]:
        return asdict(principal)

    @classmethod
    def principal(cls, context: Mapping[str, Any]) -> Principal:
        """The principal in `context`, or ValueError if it does not hold one."""
        validated = cls.model_validate({name: context.get(name) for name in cls.model_fields})
        return Principal(**validated.model_dump())
