"""A user's API keys as the keys routes take and show them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from infergate.models.base import Closed, Model

if TYPE_CHECKING:
    from infergate.domain.accounts import IssuedKey
    from infergate.domain.ports import ApiKeyRecord

KeyName = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")


class CreateKeyRequest(Closed):
    name: str | None = KeyName
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class RotateKeyRequest(Closed):
    grace_seconds: int | None = Field(None, ge=0, description="How long the old key keeps working: 86400 unless given.")


class KeyView(Model):
    key_id: str
    name: str | None
    prefix: str = Field(description="The start of the key, to tell keys apart; not enough to use it.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    status: Literal["active", "rotating", "expired", "revoked"]

    @classmethod
    def of(cls, key: ApiKeyRecord, *, now: datetime, last_used: Mapping[str, datetime]) -> KeyView:
        return cls(key_id=key.key_id, name=key.name, prefix=key.prefix, created_at=key.created_at,
                   last_used_at=last_used.get(key.key_id), expires_at=key.grace_until or key.expires_at,
                   status=key.status(now))


class IssuedKeyView(KeyView):
    api_key: str = Field(description="Shown once; InferGate stores only its hash.")
    replaces: str | None = Field(None, description="The key this one replaces, when rotated.")

    @classmethod
    def issued(cls, issued: IssuedKey, *, now: datetime, replaces: str | None = None) -> IssuedKeyView:
        view = KeyView.of(issued.record, now=now, last_used={})
        return cls(**view.model_dump(), api_key=issued.api_key, replaces=replaces)


class KeyList(Model):
    data: list[KeyView]
