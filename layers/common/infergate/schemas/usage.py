"""Where a user stands: GET /v1/usage's query and its answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from infergate.schemas.base import Schema


def _a_real_month(value: str) -> str:
    """A month whose start and end are both dates: not 0000-01, nor 9999-12 (whose end is in year 10000)."""
    if value.startswith("0000") or value == "9999-12":
        raise ValueError("must be a month between 0001-01 and 9999-11")
    return value


# A month, YYYY-MM, that the calendar can hold (not 0000-01, not 9999-12's successor).
Period = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM."),
                   AfterValidator(_a_real_month)]


class UsageQuery(Schema):
    period: Period | None = Field(None, description="A past month, YYYY-MM.")


class Tally(Schema):
    tokens: int
    requests: int
    cost_micros: int = Field(description="What the tokens cost, in millionths of `currency` (MODEL_PRICES).")


class TeamUsage(Schema):
    team_id: str
    tokens_used: int
    token_quota: int | None = Field(description="The team's monthly token quota; null: none.")
    tokens_reserved: int = Field(description="Held by the team's requests in flight.")
    cost_micros: int
    budget_micros: int | None = Field(description="The team's monthly budget, in millionths of `currency`; null: none.")
    micros_reserved: int = Field(description="Held by the team's requests in flight, in millionths of `currency`.")
    requests: int


class KeyBudgetUsage(Schema):
    budget_id: str = Field(description="Whose month the key spends: the first key of its line (rotation keeps it).")
    tokens_used: int
    cost_micros: int
    budget_micros: int
    micros_reserved: int = Field(description="Held by the key's requests in flight, in millionths of `currency`.")
    requests: int


class UsageResponse(Schema):
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    tokens_used: int
    tokens_reserved: int = Field(description="Held by requests in flight; charged or returned when they finish.")
    token_quota: int
    tokens_remaining: int
    requests: int
    cost_micros: int = Field(description="What `tokens_used` cost, in millionths of `currency`: each request's cost "
                                         "rounded half up to a whole micro once, then summed.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    resets_at: datetime
    by_model: dict[str, Tally]
    by_day: dict[str, Tally]
    team: TeamUsage | None = Field(None, description="The caller's team's month, if they belong to one.")
    key: KeyBudgetUsage | None = Field(None, description="The calling key's own month, if it has a budget.")
