from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class UsageResponse(BaseModel):
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    tokens_used: int
    token_quota: int
    tokens_remaining: int
    requests: int
    resets_at: datetime
