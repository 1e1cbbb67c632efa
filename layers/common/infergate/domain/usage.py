"""Where a user stands in a billing period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from infergate.domain.accounts import plan_of
from infergate.domain.periods import period_end, period_of
from infergate.domain.plans import PlanCatalog
from infergate.domain.ports import PeriodUsage, UsageLedger, UserRecord
from infergate.domain.principal import Principal
from infergate.errors import InvalidRequest


@dataclass(frozen=True)
class Standing:
    """A period's usage against the caller's quota."""

    usage: PeriodUsage
    token_quota: int
    resets_at: datetime

    @property
    def period(self) -> str:
        return self.usage.period

    @property
    def tokens_used(self) -> int:
        return self.usage.tokens_used

    @property
    def tokens_remaining(self) -> int:
        return max(0, self.token_quota - self.usage.tokens_used - self.usage.tokens_reserved)


def usage_for(principal: Principal, *, ledger: UsageLedger, now: datetime, period: str | None = None) -> Standing:
    """This month's standing, or a past month's when `period` (YYYY-MM) names one."""
    current = period_of(now)
    period = period or current
    if period > current:
        raise InvalidRequest(f"period {period} has not begun; the current period is {current}.")
    usage = ledger.usage(principal.user_id, period, now=now)
    return Standing(usage=usage, token_quota=principal.quota_for(period), resets_at=period_end(period))


def standing_of(user: UserRecord, *, plans: PlanCatalog, ledger: UsageLedger, now: datetime) -> Standing:
    """A user's standing this month, as an operator sees it."""
    period = period_of(now)
    quota = plan_of(user, plans).monthly_token_quota + user.grants.get(period, 0)
    return Standing(usage=ledger.usage(user.user_id, period, now=now), token_quota=quota, resets_at=period_end(period))
