"""Why a request's worst case could not be held, as its caller reads it: whose limit (`param`:
the user's or their team's), which (tokens or budget), and whether what remains is spent (429,
retry next month) or held by requests in flight (429, retry in seconds)."""

from __future__ import annotations

from datetime import datetime

from infergate.domain.errors import (
    BudgetExceeded,
    BudgetHeldInFlight,
    ModelQuotaExceeded,
    ModelQuotaHeldInFlight,
    QuotaExceeded,
    QuotaHeldInFlight,
    RateLimited,
)
from infergate.domain.ledger import LevelRefused
from infergate.domain.periods import period_end
from infergate.domain.teams import KEY_MODEL, TEAM_MODEL, USER_MODEL

# When what remains is held by requests in flight, retry after this: most finish within it.
HELD_RETRY_SECONDS = 2


def user_quota_refusal(*, quota: int, spent: int, minimum: int, period: str, now: datetime) -> RateLimited:
    """The user's own quota is spent, or held by their requests in flight."""
    if quota - spent >= minimum:
        return QuotaHeldInFlight(
            f"Your requests in flight hold what remains of your monthly quota ({quota - spent} of {quota} "
            f"tokens); it comes back as they finish. Retry in {HELD_RETRY_SECONDS} s.",
            retry_after=HELD_RETRY_SECONDS, param="user")
    resets_in = _resets_in(period, now)
    return QuotaExceeded(
        f"Your monthly quota of {quota} tokens is used up, or too little of it remains for this prompt. "
        f"It resets at the start of next month, in {resets_in} s (see GET /v1/usage).", retry_after=resets_in,
        param="user")


def level_refusal(refused: LevelRefused, *, period: str, now: datetime, currency: str) -> RateLimited:
    """A level (the user's team, their key, a quota of one model) cannot hold the request."""
    level = refused.level
    if level.kind in (TEAM_MODEL, USER_MODEL, KEY_MODEL):
        owner, model = level.id.split(":", 1)
        whose = {TEAM_MODEL: f"Your team's ({owner})", KEY_MODEL: f"Your key's ({owner})"}.get(level.kind, "Your plan's")
        return _refusal((ModelQuotaHeldInFlight, ModelQuotaExceeded), refused, "model", period=period, now=now,
                        whose=whose, limit=f"monthly quota of {level.token_quota} tokens of {model}",
                        left=f"{refused.remaining} tokens", its="the")
    if refused.limit == "tokens":
        kinds, limit, left = ((QuotaHeldInFlight, QuotaExceeded), f"monthly quota of {level.token_quota} tokens",
                              f"{refused.remaining} tokens")
    else:
        kinds, limit, left = ((BudgetHeldInFlight, BudgetExceeded),
                              f"monthly budget of {_money(level.budget_micros or 0, currency)}",
                              _money(refused.remaining, currency))
    return _refusal(kinds, refused, level.kind, period=period, now=now, whose=f"Your {level.kind}'s ({level.id})",
                    limit=limit, left=left, its="its")


def _refusal(kinds: tuple[type[RateLimited], type[RateLimited]], refused: LevelRefused, param: str, *,
             period: str, now: datetime, whose: str, limit: str, left: str, its: str) -> RateLimited:
    """`kinds[0]` when requests in flight hold what remains (retry in seconds), else `kinds[1]` (next month)."""
    held, spent = kinds
    if refused.in_flight:
        return held(f"{whose} requests in flight hold what remains of {its} {limit} ({left}); it comes back as "
                    f"they finish. Retry in {HELD_RETRY_SECONDS} s.", retry_after=HELD_RETRY_SECONDS, param=param)
    resets_in = _resets_in(period, now)
    return spent(f"{whose} {limit} is used up, or too little of it remains for this request ({left} left). It "
                 f"resets at the start of next month, in {resets_in} s.", retry_after=resets_in, param=param)


def _resets_in(period: str, now: datetime) -> int:
    return max(1, int((period_end(period) - now).total_seconds()))


def _money(micros: int, currency: str) -> str:
    whole, part = divmod(micros, 1_000_000)
    return f"{whole}.{part:06d} {currency}"
