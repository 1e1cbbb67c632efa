"""Plans: what a user may spend. A user's plan is stored on the user by name; an operator
may override any of its figures for one user.

The catalog is built from settings (config.plan_catalog): `free` takes its figures from
DEFAULT_MONTHLY_TOKEN_QUOTA, RATE_LIMIT_RPM, RATE_LIMIT_USER_RPM, RATE_LIMIT_TPM and
MAX_CONCURRENT_REQUESTS, `pro` has built-in figures, and PLANS adds plans or changes any of
them. A change applies to every user on the plan at their next request.

Requests per minute are held twice: per key (`rate_limit_rpm`) and per user across all their
keys (`rate_limit_user_rpm`), so that a user's limit does not grow with their keys, those in a
rotation's grace period included. A plan that does not say gets twice its per-key figure; it is never
below the per-key figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

# The figures an operator may set for one user, over their plan's, and the range each may take.
RANGES: Mapping[str, tuple[int, int | None]] = {
    "monthly_token_quota": (0, None),
    "rate_limit_rpm": (1, None),
    "rate_limit_user_rpm": (1, None),
    "rate_limit_tpm": (1, None),
    "max_output_tokens": (1, 4096),
    "max_api_keys": (1, 1000),
    "max_concurrent_requests": (1, 10_000),
}
FIGURES = tuple(RANGES)


class InvalidPlan(ValueError):
    """A figure of a plan outside its range, or not a whole number."""


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_token_quota: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    max_output_tokens: int
    max_api_keys: int = 10
    max_concurrent_requests: int = 4
    rate_limit_user_rpm: int = 0  # 0: twice `rate_limit_rpm`; never below it
    allowed_models: tuple[str, ...] | None = None  # the models (or aliases) it may use; None: any
    model_quotas: tuple[tuple[str, int], ...] = ()  # (model, tokens a month): each user's quota of that model

    def __post_init__(self) -> None:
        if type(self.rate_limit_rpm) is int and type(self.rate_limit_user_rpm) is int:
            # One key may always use its own figure: an operator raising a user's per-key limit
            # raises their own at least as far.
            across = self.rate_limit_user_rpm or 2 * self.rate_limit_rpm
            object.__setattr__(self, "rate_limit_user_rpm", max(across, self.rate_limit_rpm))
        for name, (least, most) in RANGES.items():
            value = getattr(self, name)
            if type(value) is not int:
                raise InvalidPlan(f"{name} must be a whole number")
            if value < least or (most is not None and value > most):
                raise InvalidPlan(f"{name} must be at least {least}" + (f" and at most {most}" if most else ""))

    def figures(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self) if field.name in RANGES}

    def with_figures(self, figures: Mapping[str, int]) -> Plan:
        """This plan with some of its figures set otherwise; InvalidPlan if one is out of range."""
        unknown = set(figures) - set(RANGES)
        if unknown:
            raise InvalidPlan(f"a plan has no figure {', '.join(sorted(unknown))}")
        return replace(self, **figures)


class PlanCatalog:
    def __init__(self, plans: Mapping[str, Plan], default: str) -> None:
        if default not in plans:
            raise ValueError(f"DEFAULT_PLAN {default!r} is not a plan ({', '.join(plans)})")
        self._plans = dict(plans)
        self.default = plans[default]

    def get(self, name: str) -> Plan | None:
        return self._plans.get(name)

    def names(self) -> list[str]:
        return sorted(self._plans)

    def all(self) -> list[Plan]:
        return [self._plans[name] for name in self.names()]
