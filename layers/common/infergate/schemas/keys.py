"""A user's API keys as the keys routes take and show them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from infergate.schemas.base import Closed, Schema

KeyName = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")


class CreateKeyRequest(Closed):
    name: str | None = KeyName
    expires_in_days: int | None = Field(None, ge=1, le=3650)


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


class IssuedKeyView(KeyView):
    api_key: str = Field(description="Shown once; InferGate stores only its hash.")
    replaces: str | None = Field(None, description="The key this one replaces, when rotated.")


class KeyList(Schema):
    data: list[KeyView]
