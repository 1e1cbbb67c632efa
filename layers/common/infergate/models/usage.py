from __future__ import annotations

from datetime import datetime

from pydantic import Field

from infergate.models.base import Model


class UsageQuery(Model):
    period: str | None = Field(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="A past month, YYYY-MM.")


class Tally(Model):
    tokens: int
    requests: int


class UsageResponse(Model):
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    tokens_used: int
    tokens_reserved: int = Field(description="Held by requests in flight; charged or returned when they finish.")
    token_quota: int
    tokens_remaining: int
    requests: int
    resets_at: datetime
    by_model: dict[str, Tally]
    by_day: dict[str, Tally]
