"""Who is calling: a user with what their plan allows them, or an operator of the gateway."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """A user as the authorizer established it: the key they used, and their plan's figures
    with their own overrides."""

    user_id: str
    key_id: str
    plan: str
    monthly_token_quota: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    max_output_tokens: int
    max_api_keys: int = 10
    max_concurrent_requests: int = 4
    suspended: bool = False
    granted_tokens: int = 0  # extra tokens an operator granted for `granted_period`
    granted_period: str = ""

    def quota_for(self, period: str) -> int:
        """Tokens the user may be charged in `period` (YYYY-MM)."""
        return self.monthly_token_quota + (self.granted_tokens if period == self.granted_period else 0)


@dataclass(frozen=True)
class Operator:
    """An operator, with an admin key: `admin` may change things, `viewer` only read them."""

    key_id: str
    name: str
    role: str

    @property
    def may_change(self) -> bool:
        return self.role == "admin"
