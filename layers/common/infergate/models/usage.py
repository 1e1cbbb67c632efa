from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field

from infergate.domain.periods import period_end
from infergate.models.base import Model

if TYPE_CHECKING:
    from infergate.domain.usage import Standing


def _a_real_month(value: str) -> str:
    try:
        period_end(value)  # its start and its end are both dates
    except ValueError:
        raise ValueError("must be a month between 0001-01 and 9999-11") from None
    return value


# A month, YYYY-MM, that the calendar can hold (not 0000-01, not 9999-12's successor).
Period = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM."),
                   AfterValidator(_a_real_month)]


class UsageQuery(Model):
    period: Period | None = Field(None, description="A past month, YYYY-MM.")


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

    @classmethod
    def of(cls, standing: Standing) -> UsageResponse:
        usage = standing.usage
        return cls(
            period=usage.period,
            tokens_used=usage.tokens_used,
            tokens_reserved=usage.tokens_reserved,
            token_quota=standing.token_quota,
            tokens_remaining=standing.tokens_remaining,
            requests=usage.requests,
            resets_at=standing.resets_at,
            by_model={name: Tally(tokens=t.tokens, requests=t.requests) for name, t in usage.by_model.items()},
            by_day={day: Tally(tokens=t.tokens, requests=t.requests) for day, t in sorted(usage.by_day.items())},
        )
