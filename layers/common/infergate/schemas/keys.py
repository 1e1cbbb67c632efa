"""A user's API keys as the keys routes take and show them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from infergate.schemas.base import Closed, ModelName, ModelQuotaMap, Schema
from infergate.schemas.text import hidden


def _visible(name: str) -> str:
    if hidden(name, spaces=True):
        raise ValueError("may hold no invisible, control or bidirectional characters, and no spaces but ' '")
    return name


# A key's name is read back in listings: nothing in it may hide there, as in an email address.
KeyName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_visible)]


class CreateKeyRequest(Closed):
    name: KeyName | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    allowed_models: list[ModelName] | None = Field(
        None, min_length=1, max_length=100,
        description="The models (or aliases) the key may use; any other is refused with 403 model_not_allowed. "
                    "A key made with a key that has such a list may use no more than it.")
    monthly_budget_micros: int | None = Field(
        None, ge=0, le=10**15,
        description="What the key alone may spend a month, in millionths of CURRENCY (MODEL_PRICES); its chats "
                    "beyond it are refused with 429 budget_exceeded, param `key`. A key made with a key that has a "
                    "budget spends that key's month.")
    model_quotas: ModelQuotaMap | None = Field(
        None, min_length=1, max_length=100,
        description="Tokens a month the key may spend on each model named (as requests name it); beyond it, 429 "
                    "model_quota_exceeded, param `model`. A key made with a key that has a budget or such quotas "
                    "spends that key's months.")


class RotateKeyRequest(Closed):
    grace_seconds: int | None = Field(None, ge=0, description="How long the old key keeps working: 86400 unless given.")


class KeyView(Schema):
    key_id: str
    name: str | None
    prefix: str = Field(description="The start of the key, to tell keys apart; not enough to use it.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    status: Literal["active", "rotating", "expired", "revoked"]
    allowed_models: list[str] | None = Field(None, description="The models it may use, `name:tag`; null: any.")
    monthly_budget_micros: int | None = Field(None, description="Its own monthly budget in micros; null: none.")
    model_quotas: dict[str, int] | None = Field(None, description="Its own tokens a month of each model; null: none.")


class IssuedKeyView(KeyView):
    api_key: str = Field(description="Shown once; InferGate stores only its hash.")
    replaces: str | None = Field(None, description="The key this one replaces, when rotated.")


class KeyList(Schema):
    data: list[KeyView]
