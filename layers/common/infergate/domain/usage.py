"""Where users stand in a billing period: a user's own month (or a past one), a user's month
as an operator sees it, and every user's use of a month."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from infergate.domain.accounts import UserRecord
from infergate.domain.errors import InvalidRequest
from infergate.domain.ledger import Level, LevelUsage, PeriodSummary, PeriodUsage, Share, UsageLedger
from infergate.domain.periods import period_end, period_of
from infergate.domain.plans import PlanCatalog
from infergate.domain.principal import Principal, plan_of


@dataclass(frozen=True)
class Standing:
    """A period's usage against the caller's quota."""

    usage: PeriodUsage
    token_quota: int
    resets_at: datetime
    currency: str = "USD"  # what the usage's *_micros count millionths of
    team: tuple[Level, LevelUsage] | None = None  # the caller's team, and its month
    key: tuple[Level, LevelUsage] | None = None  # the calling key's own budget, and its month

    @property
    def period(self) -> str:
        return self.usage.period

    @property
    def tokens_used(self) -> int:
        return self.usage.tokens_used

    @property
    def tokens_remaining(self) -> int:
        return max(0, self.token_quota - self.usage.tokens_used - self.usage.tokens_reserved)


class UsageReports:
    def __init__(self, ledger: UsageLedger, plans: PlanCatalog, *, clock: Callable[[], datetime],
                 currency: str = "USD") -> None:
        self._ledger, self._plans, self._clock, self._currency = ledger, plans, clock, currency

    def of(self, principal: Principal, period: str | None = None) -> Standing:
        """The caller's standing this month, or in a past month when `period` (YYYY-MM) names one."""
        now = self._clock()
        period = _begun(period, now=now)
        usage = self._ledger.usage(principal.user_id, period, now=now)
        team, key = principal.team, principal.key_budget
        return Standing(usage=usage, token_quota=principal.quota_for(period), resets_at=period_end(period),
                        currency=self._currency,
                        team=None if team is None else (team, self._ledger.level_usage(team, period, now=now)),
                        key=None if key is None else (key, self._ledger.level_usage(key, period, now=now)))

    def of_user(self, user: UserRecord) -> Standing:
        """A user's standing this month, as an operator sees it."""
        now = self._clock()
        period = period_of(now)
        quota = plan_of(user, self._plans).monthly_token_quota + user.grants.get(period, 0)
        return Standing(usage=self._ledger.usage(user.user_id, period, now=now), token_quota=quota,
                        resets_at=period_end(period), currency=self._currency)

    def breakdown(self, period: str | None, by: str) -> list[Share]:
        """A month (this one unless `period` names a past one) by team, user, key or model."""
        return self._ledger.breakdown(_begun(period, now=self._clock()), by)

    def breakdown_days(self, start: date, end: date, by: str) -> list[Share]:
        """Days `start` to `end` (both included) by team, user, key or model."""
        today = self._clock().date()
        if start > today:
            raise InvalidRequest(f"start {start} has not begun; today is {today}.", param="start")
        return self._ledger.breakdown_days(start, end, by)

    def summary(self, period: str | None, *, top: int) -> PeriodSummary:
        """Every user's use of a month (this one unless `period` names a past one), and the heaviest users."""
        return self._ledger.period_summary(_begun(period, now=self._clock()), top=top)


def _begun(period: str | None, *, now: datetime) -> str:
    """`period`, or this month when it is None; InvalidRequest for a month that has not begun."""
    current = period_of(now)
    if period is not None and period > current:
        raise InvalidRequest(f"period {period} has not begun; the current period is {current}.")
    return period or current
