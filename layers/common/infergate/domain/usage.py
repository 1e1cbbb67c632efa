"""Where a user stands in a billing period."""

from __future__ import annotations

from datetime import datetime

from infergate.domain.periods import period_end, period_of
from infergate.domain.ports import UsageLedger
from infergate.errors import InvalidRequest
from infergate.models.principal import Principal
from infergate.models.usage import Tally, UsageResponse


def usage_for(principal: Principal, *, ledger: UsageLedger, now: datetime, period: str | None = None) -> UsageResponse:
    """This month's standing, or a past month's when `period` (YYYY-MM) names one."""
    current = period_of(now)
    period = period or current
    if period > current:
        raise InvalidRequest(f"period {period} has not begun; the current period is {current}.")
    usage = ledger.usage(principal.user_id, period, now=now)
    quota = principal.monthly_token_quota
    return UsageResponse(
        period=period,
        tokens_used=usage.tokens_used,
        tokens_reserved=usage.tokens_reserved,
        token_quota=quota,
        tokens_remaining=max(0, quota - usage.tokens_used - usage.tokens_reserved),
        requests=usage.requests,
        resets_at=period_end(period),
        by_model={name: Tally(tokens=t.tokens, requests=t.requests) for name, t in usage.by_model.items()},
        by_day={day: Tally(tokens=t.tokens, requests=t.requests) for day, t in sorted(usage.by_day.items())},
    )
