"""Plans: what a user may spend. A user's plan is stored on the user by name; an operator
may override any of its figures for one user.

`free` takes its figures from settings (DEFAULT_MONTHLY_TOKEN_QUOTA,
RATE_LIMIT_RPM, RATE_LIMIT_TPM, MAX_CONCURRENT_REQUESTS); `pro` has built-in figures; PLANS (JSON)
adds plans or changes any of them. A change applies to every user on the
plan at their next request.
"""

from __future__ import annotations

import json

from pydantic import ConfigDict, Field, ValidationError

from infergate.config import Settings
from infergate.models.base import Model


class Plan(Model):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    monthly_token_quota: int = Field(ge=0)
    rate_limit_rpm: int = Field(ge=1)
    rate_limit_tpm: int = Field(ge=1)
    max_output_tokens: int = Field(ge=1, le=4096)
    max_api_keys: int = Field(10, ge=1, le=1000)
    max_concurrent_requests: int = Field(4, ge=1, le=10_000)


# The figures an operator may set for one user, over their plan's.
FIGURES = ("monthly_token_quota", "rate_limit_rpm", "rate_limit_tpm", "max_output_tokens", "max_api_keys",
           "max_concurrent_requests")


class PlanCatalog:
    def __init__(self, plans: dict[str, Plan], default: str) -> None:
        if default not in plans:
            raise ValueError(f"DEFAULT_PLAN {default!r} is not a plan ({', '.join(plans)})")
        self._plans = plans
        self.default = plans[default]

    def get(self, name: str) -> Plan | None:
        return self._plans.get(name)

    def names(self) -> list[str]:
        return sorted(self._plans)

    def all(self) -> list[Plan]:
        return [self._plans[name] for name in self.names()]


def catalog_from(settings: Settings) -> PlanCatalog:
    plans = {
        "free": Plan(
            name="free",
            monthly_token_quota=settings.default_monthly_token_quota,
            rate_limit_rpm=settings.rate_limit_rpm,
            rate_limit_tpm=settings.rate_limit_tpm,
            max_output_tokens=1024,
            max_concurrent_requests=settings.max_concurrent_requests,
        ),
        "pro": Plan(name="pro", monthly_token_quota=5_000_000, rate_limit_rpm=600, rate_limit_tpm=200_000, max_output_tokens=4096,
                    max_concurrent_requests=16),
    }
    if settings.plans.strip():
        try:
            for name, figures in json.loads(settings.plans).items():
                base = plans[name].model_dump() if name in plans else {}
                plans[name] = Plan.model_validate({**base, **figures, "name": name})
        except (ValueError, AttributeError, ValidationError) as error:
            raise ValueError(f"PLANS is not valid: {error}") from None
    return PlanCatalog(plans, settings.default_plan)

