"""The interfaces the domain needs from the outside world.

The stores and the LLM client implement them; tests may hand in anything
with the same shape.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from infergate.domain.messages import Message, Tool, ToolCall
from infergate.errors import InferGateError


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    email: str | None  # None for a user of single sign-on whose token named no address
    plan: str  # a plan's name; its figures live in the plan catalog
    created_at: datetime
    status: str = "active"  # or "suspended": every key refused with 403 until reactivated
    overrides: Mapping[str, int] = field(default_factory=dict)  # plan figures set for this user alone
    grants: Mapping[str, int] = field(default_factory=dict)  # extra tokens by period (YYYY-MM)
    identity: str | None = None  # "<issuer> <subject>" for a user of single sign-on


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    user_id: str
    key_hash: str
    created_at: datetime
    name: str | None = None
    prefix: str = ""  # the start of the key, to tell keys apart
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    grace_until: datetime | None = None  # set when rotated: the key works until then
    successor_id: str | None = None

    def status(self, now: datetime) -> str:
        """active, rotating (replaced, within its grace period), expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.grace_until is not None:
            return "rotating" if now < self.grace_until else "expired"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True)
class AdminKeyRecord:
    key_id: str
    key_hash: str
    name: str
    role: str  # "admin": everything; "viewer": reads only
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Audit:
    """Who does an admin action, and what it is called; the store records its subject and
    the subject's state before and after, with the change itself."""

    actor: str
    action: str


@dataclass(frozen=True)
class AuditEntry:
    entry_id: str
    actor: str
    at: datetime
    action: str
    subject: Mapping[str, str]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


class Rotation(enum.Enum):
    ROTATED = "rotated"
    NOT_FOUND = "not_found"
    NOT_ACTIVE = "not_active"


class AccountStore(Protocol):
    def create(self, user: UserRecord, key: ApiKeyRecord) -> None:
        """Store both or neither; raise EmailAlreadyRegistered if the email is taken."""

    def find_by_key_hash(self, key_hash: str) -> tuple[ApiKeyRecord, UserRecord] | None: ...

    def find_user(self, user_id: str) -> UserRecord | None: ...

    def find_user_by_identity(self, identity: str) -> UserRecord | None: ...

    def create_identity_user(self, user: UserRecord) -> UserRecord:
        """Store a user of single sign-on, or return the one a concurrent first request stored."""

    def search_users(self, *, email: str | None, plan: str | None, limit: int, after: str | None) -> list[UserRecord]:
        """Users by id, after `after`: those whose email starts with `email`, on `plan`."""

    def keys_of(self, user_id: str) -> list[ApiKeyRecord]: ...

    def add_key(self, key: ApiKeyRecord, *, max_active: int, now: datetime) -> bool:
        """Store the key unless its user already has `max_active` active keys (False)."""

    def rotate_key(self, key_id: str, user_id: str, successor: ApiKeyRecord, *, grace_until: datetime,
                   now: datetime) -> Rotation:
        """Replace an active key of the user's by `successor`, the old one working until
        `grace_until`; at most one successor per key, whatever the concurrency."""

    def revoke_key(self, key_id: str, *, user_id: str | None, now: datetime,
                   audit: Audit | None = None) -> ApiKeyRecord | None:
        """Revoke a key (of `user_id`'s, when given): the key as it now stands, or None if
        there is no such key."""

    def change_user(self, user_id: str, changes: Mapping[str, Any], *, audit: Audit) -> UserRecord | None:
        """Set fields of a user (plan, status, overrides), recording the action; None if no such user."""

    def grant(self, user_id: str, period: str, tokens: int, *, audit: Audit) -> UserRecord | None:
        """Add tokens to a user's quota for `period`, recording the action; None if no such user."""

    def add_admin_key(self, key: AdminKeyRecord) -> None: ...

    def find_admin_key(self, key_hash: str) -> AdminKeyRecord | None: ...

    def audit_log(self, *, limit: int, before: str | None) -> list[AuditEntry]:
        """The newest entries first, those older than entry `before` when given."""


@dataclass(frozen=True)
class Claims:
    """What a verified sign-in token says of its holder."""

    issuer: str
    subject: str
    email: str | None
    plan: str | None  # the plan a configurable claim names, if any


class TokenRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Claims:
        """The token's claims, or TokenRefused (code invalid_token or token_expired)."""


class AccountsVersion(Protocol):
    """A stamp every instance can read cheaply, advanced whenever a key or a user changes,
    so that instances caching what they read from the AccountStore know when to read again."""

    def read(self) -> int | None:
        """The current stamp, or None when it cannot be read."""

    def advance(self) -> None: ...


class FailedAuthentications(Protocol):
    """Credentials refused lately, by the address they came from."""

    def blocked_for_ms(self, source: str) -> int:
        """How long `source` must wait before its credentials are looked up again; 0 if it
        need not (or if it cannot be told)."""

    def add(self, source: str) -> None:
        """Count one refused credential of `source`'s."""


@dataclass(frozen=True)
class Limit:
    """At most `limit` units per `window_ms` under `key`; this request costs `cost` units."""

    key: str
    limit: int
    window_ms: int
    cost: int


@dataclass(frozen=True)
class Slots:
    """At most `limit` requests in flight at once under `key`; each holds its slot until it
    ends, or, if its function dies first, until its lease of `lease_ms` runs out."""

    key: str
    limit: int
    lease_ms: int


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_after_ms: int  # until the oldest counted request leaves the window


@dataclass(frozen=True)
class AdmissionDecision:
    allowed: bool
    states: tuple[LimitState, ...]  # one per Limit asked about, in order
    retry_after_ms: int  # when a limit refused the request
    breaker_retry_ms: int = 0  # > 0: refused because the model server's circuit breaker is open
    probe: bool = False  # admitted as the one call a half-open breaker lets through
    slots_full: bool = False  # refused because every slot was taken


@dataclass(frozen=True)
class Conclusion:
    """How an admitted request ended, for the limits and the circuit breaker."""

    ticket: str
    token_limit: Limit | None  # the limit whose count becomes `tokens`
    tokens: int
    probe: bool
    model_healthy: bool | None  # None when the model server was not asked
    slots: Slots | None = None  # whose slot the request held, to free it


class AdmissionStore(Protocol):
    def admit(self, limits: Sequence[Limit], *, ticket: str, guarded: bool, key_id: str = "",
              slots: Slots | None = None) -> AdmissionDecision:
        """Count the request in the request total and note that `key_id` was used; then, if
        it fits every limit and a slot is free (and, when `guarded`, the circuit breaker lets
        it through), count `ticket` under all of them and give it a slot, atomically; else
        do neither. Raises RateLimiterUnavailable if it cannot ask."""

    def conclude(self, conclusion: Conclusion) -> None:
        """Correct the token count, free the slot and tell the circuit breaker, in one step."""

    def breaker_open(self) -> bool:
        """Whether the model server's circuit breaker is open (or probing); RateLimiterUnavailable
        if it cannot ask."""


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
    end_user: str | None = None  # OpenAI's `user`: who, behind a shared key, asked

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


@dataclass(frozen=True)
class LoggedRequest:
    """One line of the request log as stored: `charged` is what the counter was charged for it."""

    reservation_id: str
    seq: int  # its place in the user's month, from 1
    request_id: str
    key_id: str
    model: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    charged: int
    at: datetime


@dataclass(frozen=True)
class LedgerStatement:
    """A user's month as one consistent reading: the counter and the log lines that make it up."""

    tokens_used: int
    log: tuple[LoggedRequest, ...]


@dataclass(frozen=True)
class UserTally:
    user_id: str
    tokens: int
    requests: int


@dataclass(frozen=True)
class PeriodSummary:
    """Every user's use of a period: totals, and the heaviest users."""

    period: str
    tokens_used: int
    requests: int
    users: int
    top: list[UserTally]


class UsageLedger(Protocol):
    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime) -> Reservation | None:
        """Hold as much of `reservation.tokens` as remains of `quota`, atomically: the
        reservation as held, or None if less than `minimum` remains."""

    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        """Charge the outcome's tokens (never more than the reservation holds, so never beyond
        `quota`), drop the hold and log the request, all at once and at most once. Returns the
        tokens charged."""

    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        """Drop the hold, charge nothing, and log why; at most once."""

    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage: ...

    def statement(self, user_id: str, period: str) -> LedgerStatement:
        """The counter and the request log as of one instant: the log's charges sum to the counter."""

    def period_summary(self, period: str, *, top: int) -> PeriodSummary: ...


@dataclass(frozen=True)
class Completion:
    model: str
    content: str
    prompt_tokens: int | None  # None when the model server did not report it
    completion_tokens: int
    done_reason: str | None
    pieces: tuple[str, ...] = ()  # the answer as the model server streamed it
    failure: InferGateError | None = None  # set when the answer was cut off: this much was generated first
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def cut(cls, model: str, pieces: Sequence[str], failure: InferGateError) -> Completion:
        """An answer that ended after `pieces`, for `failure`: a piece for each token generated,
        and no prompt count (Ollama sends it only with the end of an answer)."""
        return cls(model=model, content="".join(pieces), prompt_tokens=None, completion_tokens=len(pieces),
                   done_reason=None, pieces=tuple(pieces), failure=failure)


@dataclass(frozen=True)
class Embedding:
    model: str
    vectors: tuple[tuple[float, ...], ...]  # one per input, in order
    prompt_tokens: int | None  # None when the model server did not report it


class KeyActivity(Protocol):
    def last_used(self, key_ids: Sequence[str]) -> Mapping[str, datetime]:
        """When each of the keys was last used, for those that have been; empty if unknown."""


class ChatModel(Protocol):
    def chat(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None,
    ) -> Completion:
        """`tools`: functions the model may call; `answer_format`: "json", or a JSON schema the
        answer must conform to."""

    def stream(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> Generator[str | Completion, None, None]:
        """The answer's pieces of content as the model produces them, then its Completion; within
        `timeout` seconds when given. Closed early, the model stops generating."""

    def embed(self, *, model: str, inputs: Sequence[str], dimensions: int | None, request_id: str) -> Embedding:
        """One vector per input; `dimensions`, when given, for a model that can shorten its vectors."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    modified_at: datetime | None


class ModelCatalog(Protocol):
    def models(self) -> list[ModelEntry] | None:
        """The models the server has, or None when it cannot say right now."""
