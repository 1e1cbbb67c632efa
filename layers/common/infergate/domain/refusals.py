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
from infergate.domain.teams import TEAM_MODEL, USER_MODEL

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
    """A level (the user's team) cannot hold the request: its tokens or its budget."""
    level, tokens = refused.level, refused.limit == "tokens"
    if level.kind in (TEAM_MODEL, USER_MODEL):
        return _model_quota_refusal(refused, period=period, now=now)
    if tokens:
        limit, left = f"monthly quota of {level.token_quota} tokens", f"{refused.remaining} tokens"
    else:
        limit, left = f"monthly budget of {_money(level.budget_micros or 0, currency)}", _money(refused.remaining, currency)
    whose = f"Your {level.kind}'s ({level.id})"
    if refused.in_flight:
        kind = QuotaHeldInFlight if tokens else BudgetHeldInFlight
        return kind(f"{whose} requests in flight hold what remains of its {limit} ({left}); it comes back as they "
                    f"finish. Retry in {HELD_RETRY_SECONDS} s.", retry_after=HELD_RETRY_SECONDS, param=level.kind)
    resets_in = _resets_in(period, now)
    kind = QuotaExceeded if tokens else BudgetExceeded
    return kind(f"{whose} {limit} is used up, or too little of it remains for this request ({left} left). It "
                f"resets at the start of next month, in {resets_in} s.", retry_after=resets_in, param=level.kind)


def _model_quota_refusal(refused: LevelRefused, *, period: str, now: datetime) -> RateLimited:
    """A quota of one model (the team's, or each user's on the plan) is spent or held in flight."""
    owner, model = refused.level.id.split(":", 1)
    whose = f"Your team's ({owner})" if refused.level.kind == TEAM_MODEL else "Your plan's"
    limit = f"monthly quota of {refused.level.token_quota} tokens of {model}"
    if refused.in_flight:
        return ModelQuotaHeldInFlight(
            f"{whose} requests in flight hold what remains of the {limit} ({refused.remaining} "
            f"tokens); it comes back as they finish. Retry in {HELD_RETRY_SECONDS} s.",
            retry_after=HELD_RETRY_SECONDS, param="model")
    resets_in = _resets_in(period, now)
    return ModelQuotaExceeded(
        f"{whose} {limit} is used up, or too little of it remains for this request "
        f"({refused.remaining} tokens left). It resets at the start of next month, in {resets_in} s.",
        retry_after=resets_in, param="model")


def _resets_in(period: str, now: datetime) -> int:
    return max(1, int((period_end(period) - now).total_seconds()))


def _money(micros: int, currency: str) -> str:
    whole, part = divmod(micros, 1_000_000)
    return f"{whole}.{part:06d} {currency}"
