"""Who is calling, and what their plan allows them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """A caller as the authorizer established it: a user, the key they used, and their plan's figures."""

    user_id: str
    key_id: str
    plan: str
    monthly_token_quota: int
    rate_limit_rpm: int
    rate_limit_tpm: int
    max_output_tokens: int
