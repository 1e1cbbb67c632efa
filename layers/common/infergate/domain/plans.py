"""What a user's plan allows. The default plan's figures come from settings."""

from __future__ import annotations

from dataclasses import dataclass

from infergate.config import Settings

DEFAULT_PLAN = "free"


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_token_quota: int
    rate_limit_rpm: int


def default_plan(settings: Settings) -> Plan:
    return Plan(
        name=DEFAULT_PLAN,
        monthly_token_quota=settings.default_monthly_token_quota,
        rate_limit_rpm=settings.rate_limit_rpm,
    )
