"""The interfaces the domain needs from the outside world.

The stores and the LLM client implement them; tests may hand in anything
with the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from infergate.models.chat import ChatMessage


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    email: str
    plan: str  # a plan's name; its figures live in the plan catalogue
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    user_id: str
    key_hash: str
    created_at: datetime


class AccountStore(Protocol):
    def create(self, user: UserRecord, key: ApiKeyRecord) -> None:
        """Store both or neither; raise EmailAlreadyRegistered if the email is taken."""

    def find_by_key_hash(self, key_hash: str) -> tuple[ApiKeyRecord, UserRecord] | None: ...


@dataclass(frozen=True)
class Limit:
    """At most `limit` units per `window_ms` under `key`; this request costs `cost` units."""

    key: str
    limit: int
    window_ms: int
    cost: int


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_after_ms: int  # until the oldest counted request leaves the window


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    states: tuple[LimitState, ...]  # one per Limit asked about, in order
    retry_after_ms: int


class RateLimiter(Protocol):
    def admit(self, limits: Sequence[Limit], *, ticket: str) -> RateDecision:
        """Count `ticket` against every limit if it fits all of them, atomically; else count nothing."""

    def adjust(self, limit: Limit, *, ticket: str, cost: int) -> None:
        """Change what an admitted ticket counts for under `limit` (0 removes it)."""


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    user_id: str
    period: str
    tokens: int
    expires_at: datetime


@dataclass(frozen=True)
class RequestOutcome:
    """One line of the request log: what a request was charged and why."""

    request_id: str
    user_id: str
    key_id: str
    model: str
    status: str  # "ok", or the error code that ended it
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    at: datetime
    detail: str | None = None  # what went wrong, for a request that failed

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Tally:
    tokens: int
    requests: int


@dataclass(frozen=True)
class PeriodUsage:
    period: str
    tokens_used: int
    tokens_reserved: int
    requests: int
    by_model: dict[str, Tally]
    by_day: dict[str, Tally]


class UsageLedger(Protocol):
    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime) -> Reservation | None:
        """Hold as much of `reservation.tokens` as remains of `quota`, atomically: the
        reservation as held, or None if less than `minimum` remains."""

    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        """Charge the outcome's tokens (never beyond `quota`), drop the hold and log the
        request, all at once. Returns the tokens charged."""

    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        """Drop the hold, charge nothing, and log why."""

    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage: ...


@dataclass(frozen=True)
class Completion:
    model: str
    content: str
    prompt_tokens: int | None  # None when the model server did not report it
    completion_tokens: int
    done_reason: str | None
    pieces: tuple[str, ...] = ()  # the answer as the model server streamed it


class ChatModel(Protocol):
    def chat(
        self, *, model: str, messages: list[ChatMessage], max_tokens: int, request_id: str, options: dict | None = None,
    ) -> Completion: ...


@dataclass(frozen=True)
class ModelEntry:
    name: str
    modified_at: datetime | None


class ModelCatalog(Protocol):
    def models(self) -> list[ModelEntry] | None:
        """The models the server has, or None when it cannot say right now."""


@dataclass(frozen=True)
class BreakerPass:
    """Leave to call the model server; a probe is the one call a half-open breaker lets through."""

    probe: bool = False


class CircuitBreaker(Protocol):
    def before_call(self) -> BreakerPass:
        """Leave to call, or ServiceUnavailable (with Retry-After) while the breaker is open."""

    def after_call(self, passage: BreakerPass, *, ok: bool) -> None: ...

    def abandon(self, passage: BreakerPass) -> None:
        """The call was not made after all (refused by a limit or the quota)."""
