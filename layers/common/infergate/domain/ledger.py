"""The monthly token ledger's port, and the values it speaks of: a reservation held against a
user's quota, a request's outcome as the request log records it, and readings of a month.

A request holds its worst case before the model is asked (`reserve`), and is then either
charged its real counts (`settle`) or nothing (`release`), each at most once; a hold that is
never settled expires by itself. The MongoDB ledger (stores/usage.py) and the in-memory one
the tests use (tests/support/fakes.py) are held to the same contract (tests/integration/
test_ledger_contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from infergate.domain.prices import FREE, NOTHING, Price, WorstCost


@dataclass(frozen=True)
class Level:
    """A limit a request must fit under beyond its user's own quota: its team's month (`kind`
    "team"), with a token quota and a budget in micros, either of them None for none."""

    kind: str
    id: str
    token_quota: int | None
    budget_micros: int | None


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    user_id: str
    period: str
    tokens: int
    expires_at: datetime
    micros: int | None = None  # the most its tokens may cost; None: not held, and not capped
    levels: tuple[Level, ...] = ()  # held at each of these too, as much as the user's hold


class LevelRefused(Exception):
    """A level (a team) cannot hold what the request needs: its `limit` ("tokens" or "budget") is
    spent, or, when `in_flight`, held by requests in flight."""

    def __init__(self, level: Level, limit: str, *, in_flight: bool, remaining: int) -> None:
        super().__init__(f"{level.kind} {level.id}: {limit}")
        self.level, self.limit, self.in_flight, self.remaining = level, limit, in_flight, remaining


@dataclass(frozen=True)
class LevelUsage:
    """A level's month: what it was charged, and what its requests in flight hold."""

    period: str
    tokens_used: int
    cost_micros: int
    tokens_reserved: int
    micros_reserved: int
    requests: int


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
    servers: tuple[str, ...] = ()  # every model server the request was sent to, in order: the last answered
    price: Price = FREE  # what its model's tokens cost (MODEL_PRICES)

    @property
    def server(self) -> str | None:
        """The server that answered (or failed last)."""
        return self.servers[-1] if self.servers else None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def counted(self, charge: int) -> bool:
        """Whether the request counts as one that used the model: it succeeded, or was cut off
        after the model had generated tokens, which are charged."""
        return self.status == "ok" or charge > 0

    def cost_micros(self, charge: int, *, held: int | None = None) -> int:
        """What `charge` of its tokens cost, in micros, never more than `held` (what its reservation
        held for them): worked out once, here, for every total. Nothing charged costs nothing, so a
        request that does not count (domain `counted`) costs 0."""
        cost = self.price.cost_of_charge(self.prompt_tokens, self.completion_tokens, charge)
        return cost if held is None else min(cost, held)


@dataclass(frozen=True)
class Tally:
    tokens: int
    requests: int
    cost_micros: int = 0


@dataclass(frozen=True)
class PeriodUsage:
    period: str
    tokens_used: int
    tokens_reserved: int
    requests: int
    by_model: dict[str, Tally]
    by_day: dict[str, Tally]
    cost_micros: int = 0


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
    cost_micros: int = 0  # what `charged` cost


@dataclass(frozen=True)
class LedgerStatement:
    """A user's month as one consistent reading: the counter and the log lines that make it up."""

    tokens_used: int
    log: tuple[LoggedRequest, ...]
    cost_micros: int = 0


@dataclass(frozen=True)
class UserTally:
    user_id: str
    tokens: int
    requests: int
    cost_micros: int = 0


@dataclass(frozen=True)
class PeriodSummary:
    """Every user's use of a period: totals, and the heaviest users."""

    period: str
    tokens_used: int
    requests: int
    users: int
    top: list[UserTally]
    cost_micros: int = 0


@dataclass(frozen=True)
class Share:
    """One team's, user's, key's or model's part of a month."""

    id: str
    tokens: int
    requests: int
    cost_micros: int


BREAKDOWNS = ("team", "user", "key", "model")


# A user's holds are their requests in flight; with no limit given, any number may be held.
ANY_NUMBER_HELD = 1_000_000


class HoldsFull(Exception):
    """The user already holds as many reservations as they may: their plan's requests in flight."""

    def __init__(self, most_held: int) -> None:
        super().__init__(f"{most_held} reservations held")
        self.most_held = most_held


class UsageLedger(Protocol):
    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime,
                most_held: int = ANY_NUMBER_HELD, worst: WorstCost = NOTHING) -> Reservation | None:
        """Hold as much of `reservation.tokens` as remains of `quota`, atomically: the
        reservation as held, or None if less than `minimum` remains. HoldsFull if the user
        holds `most_held` unexpired reservations already. The same is held at each of the
        reservation's levels; LevelRefused, with nothing held anywhere, if one cannot."""

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

    def level_usage(self, level: Level, period: str, *, now: datetime) -> LevelUsage:
        """A level's month (a team's), as charged and held."""

    def breakdown(self, period: str, by: str) -> list[Share]:
        """The month by team, user, key or model (BREAKDOWNS), the heaviest first."""

    def breakdown_days(self, start: date, end: date, by: str) -> list[Share]:
        """Days `start` to `end` (both included) by team, user, key or model, the heaviest first."""
