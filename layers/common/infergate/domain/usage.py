"""Where a user stands in a billing period."""

from __future__ import annotations

from datetime import datetime

from infergate.domain.periods import period_end, period_of
from infergate.domain.ports import UsageLedger
from infergate.models.principal import Principal
from infergate.models.usage import UsageResponse


def current_usage(principal: Principal, *, ledger: UsageLedger, now: datetime) -> UsageResponse:
    period = period_of(now)
    usage = ledger.usage(principal.user_id, period, now=now)
    quota = principal.monthly_token_quota
    return UsageResponse(
        period=period,
        tokens_used=usage.tokens_used,
        token_quota=quota,
        tokens_remaining=max(0, quota - usage.tokens_used - usage.tokens_reserved),
        requests=usage.requests,
        resets_at=period_end(period),
    )
