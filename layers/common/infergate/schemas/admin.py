"""The admin API's shapes: users, changes to them, usage across users, plans, the audit log."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from infergate.schemas.base import Closed, ModelName, ModelQuotaMap, Refused, Schema
from infergate.schemas.keys import KeyName, KeyView
from infergate.schemas.usage import Period, UsageResponse

_ID = re.compile(r"^[a-z]{3}_[0-9a-f]{1,64}$")


def cursor_of(last_id: str) -> str:
    """An opaque cursor for the page after `last_id`."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        after = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = ""
    if not _ID.match(after):
        raise ValueError("is not a cursor this API gave")
    return after


class PageQuery(Closed):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200)

    @field_validator("cursor")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        _after(value)
        return value

    @property
    def after(self) -> str | None:
        return _after(self.cursor)


class UserQuery(PageQuery):
    email: str | None = Field(None, min_length=1, max_length=254)
    plan: str | None = Field(None, min_length=1, max_length=64)


class AuditQuery(PageQuery):
    """The audit log, a page at a time; each filter given must match."""

    actor: str | None = Field(None, min_length=1, max_length=200,
                              description="A part of who made the change: an operator's name or admin key id.")
    subject: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$",
                                description="The id of what changed: a user, a key, a team.")
    action: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[a-z_]+$",
                               description="What was done, e.g. change_user, revoke_key.")


class UsageSummaryQuery(Closed):
    period: Period | None = None
    start: date | None = Field(None, description="The first day of a range of days (YYYY-MM-DD), instead of a month.")
    end: date | None = Field(None, description="The range's last day, itself included: at most 366 days after start.")
    top: int = Field(10, ge=1, le=100)
    by: Literal["team", "user", "key", "model"] | None = Field(
        None, description="Also break the month down by team, user, key or model, the heaviest first.")
    format: Literal["json", "csv"] = Field("json", description="csv: the breakdown alone, as text/csv (needs `by`).")

    @model_validator(mode="after")
    def _csv_needs_by(self) -> UsageSummaryQuery:
        if self.format == "csv" and self.by is None:
            raise Refused("format", "csv is a breakdown: say `by` (team, user, key or model)")
        if self.start is not None or self.end is not None:
            self._a_range()
        return self

    def _a_range(self) -> None:
        if self.start is None or self.end is None:
            raise Refused("start" if self.start is None else "end", "a range of days needs both start and end")
        if self.period is not None:
            raise Refused("period", "say a month (period) or a range of days (start and end), not both")
        if self.by is None:
            raise Refused("by", "a range of days is a breakdown: say `by` (team, user, key or model)")
        if not 0 <= (self.end - self.start).days <= 366:
            raise Refused("end", "a range ends on or after its start, at most 366 days later")


class UserView(Schema):
    user_id: str
    email: str | None
    plan: str
    status: Literal["active", "suspended"]
    overrides: dict[str, int]
    grants: dict[str, int] = Field(description="Extra tokens by month (YYYY-MM).")
    identity: str | None = Field(description="The issuer and subject of a user of single sign-on.")
    team_id: str | None = Field(None, description="The team they belong to, if any.")
    kind: str = Field("person", description="`person`, or `service` for a team's service account.")
    name: str | None = Field(None, description="A service account's name.")
    created_at: datetime


class UserPage(Schema):
    data: list[UserView]
    next_cursor: str | None


class UserDetail(UserView):
    keys: list[KeyView]
    usage: UsageResponse = Field(description="This month's.")


class ChangeUserRequest(Closed):
    plan: str | None = Field(None, min_length=1, max_length=64)
    overrides: dict[str, int | None] | None = Field(
        None, description="Figures of the plan set for this user alone; null clears one.")
    status: Literal["active", "suspended"] | None = None

    @field_validator("overrides")
    @classmethod
    def _positive(cls, value: dict[str, int | None] | None) -> dict[str, int | None] | None:
        if value and any(figure is not None and figure < 0 for figure in value.values()):
            raise ValueError("figures may not be negative")
        return value


class ChangeKeyRequest(Closed):
    """Any user's key's own limits; null clears one."""

    monthly_budget_micros: int | None = Field(None, ge=0, le=10**15,
                                              description="What it alone may spend a month, in micros of CURRENCY.")
    allowed_models: list[ModelName] | None = Field(None, min_length=1, max_length=100,
                                                   description="The models (or aliases) it may use.")
    model_quotas: ModelQuotaMap | None = Field(None, min_length=1, max_length=100,
                                               description="Tokens a month it may spend on each model named.")

    @model_validator(mode="after")
    def _something(self) -> ChangeKeyRequest:
        if not self.model_fields_set:
            raise ValueError("say what to change: monthly_budget_micros, allowed_models or model_quotas")
        return self

    def changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set}


class GrantRequest(Closed):
    tokens: int = Field(ge=1, le=10**12)


class AdminKeyView(Schema):
    """An admin key, never its secret."""

    key_id: str
    name: str
    role: Literal["admin", "viewer"]
    created_at: datetime
    revoked_at: datetime | None
    status: Literal["active", "revoked"]


class AdminKeyList(Schema):
    data: list[AdminKeyView]


class IssuedAdminKey(AdminKeyView):
    api_key: str = Field(description="The key itself (iga_...), shown this once.")


class CreateAdminKeyRequest(Closed):
    name: KeyName = Field(description="Who or what will use it; the audit log names it.")
    role: Literal["admin", "viewer"] = "admin"


class RevokedKey(Schema):
    key_id: str
    status: Literal["revoked"] = "revoked"


class Share(Schema):
    id: str = Field(description="The team's, user's or key's id, or the model's name.")
    tokens: int
    requests: int
    cost_micros: int


class UserUsage(Schema):
    user_id: str
    tokens: int
    requests: int
    cost_micros: int


class UsageSummary(Schema):
    period: str
    tokens_used: int
    requests: int
    cost_micros: int = Field(description="What the month's tokens cost, in millionths of `currency`.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    users: int
    top: list[UserUsage]
    by: str | None = Field(None, description="What `breakdown` is by, when asked for.")
    breakdown: list[Share] | None = Field(None, description="The month by `by`, the heaviest first.")


class UsageRange(Schema):
    """A range of days broken down: its totals are the breakdown's (by team: its members' use)."""

    start: date
    end: date
    tokens_used: int
    requests: int
    cost_micros: int = Field(description="What the range's tokens cost, in millionths of `currency`.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    by: str
    breakdown: list[Share] = Field(description="The days by `by`, the heaviest first.")


class PriceView(Schema):
    input_per_million_micros: int = Field(description="Millionths of `currency` per million prompt tokens.")
    output_per_million_micros: int = Field(description="Millionths of `currency` per million generated tokens.")


class PriceList(Schema):
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    prices: dict[str, PriceView] = Field(description="MODEL_PRICES: by model or alias; any other model costs 0.")


class PlanView(Schema):
    name: str
    monthly_token_quota: int
    rate_limit_rpm: int  # per key
    rate_limit_user_rpm: int  # per user, across their keys
    rate_limit_tpm: int
    max_output_tokens: int
    max_api_keys: int
    max_concurrent_requests: int
    allowed_models: list[str] | None = Field(description="The models (or aliases) it may use; null: any.")
    model_quotas: dict[str, int] = Field(description="Tokens a month each of its users may spend on each model named.")
    default: bool


class PlanList(Schema):
    data: list[PlanView]


class ServerView(Schema):
    """A model server of the pool, as operators see it; never its URL, which may hold credentials."""

    name: str
    kind: Literal["ollama", "openai", "vllm", "llama.cpp"]
    healthy: bool  # it answered its last discovery and its breaker is not open
    breaker: Literal["closed", "open", "half_open"]
    models: list[str]  # configured, or as discovery last found them
    loaded: list[str]  # in the server's memory now (Ollama's /api/ps)
    slots: int | None  # requests it is sent at once, at most; null: not held back
    in_flight: int  # from every function instance
    requests_last_minute: int
    failures_last_minute: int
    p50_ms: int | None  # the last minute's median latency


class ServerList(Schema):
    data: list[ServerView]


class AuditView(Schema):
    entry_id: str
    actor: str
    at: datetime
    action: str
    subject: dict[str, str]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(Schema):
    data: list[AuditView]
    next_cursor: str | None
