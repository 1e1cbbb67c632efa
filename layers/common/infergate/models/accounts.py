from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, ConfigDict, Field

from infergate.models.base import Model

if TYPE_CHECKING:
    from infergate.domain.accounts import Registration

# Deliberately plain: one @, a dot in the domain, no spaces or control characters.
# Deliverability is the mail server's business, not the gateway's.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")


def _normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError("must be an email address such as ada@example.com")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_normalise_email)]


class RegisterRequest(Model):
    model_config = ConfigDict(extra="forbid")

    email: Email


class RegisterResponse(Model):
    user_id: str
    email: str
    api_key: str = Field(description="Shown once; InferGate stores only its hash.")
    key_id: str
    plan: str
    monthly_token_quota: int

    @classmethod
    def of(cls, registration: Registration) -> RegisterResponse:
        return cls(
            user_id=registration.user.user_id,
            email=registration.user.email,
            api_key=registration.key.api_key,
            key_id=registration.key.record.key_id,
            plan=registration.plan.name,
            monthly_token_quota=registration.plan.monthly_token_quota,
        )
