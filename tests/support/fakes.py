"""In-memory stand-ins for the domain's ports, for unit tests of its rules: the limit store and
the pool's store (Redis), the usage ledger (MongoDB), the model servers and their catalog, and
telemetry.

The ledger and the pool keep the same contracts as the stores (tests/integration/
test_ledger_contract.py and test_pool_contract.py hold both to them); the limit store counts
like the Redis script, without its windows. The pool runs on a clock of its own, which waiting
advances, so that time-bound rules are tested without waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from infergate.domain.admission import Conclusion, LimitState, Verdict
from infergate.domain.errors import RateLimiterUnavailable, ThinkingUnsupported
from infergate.domain.ledger import (
    ANY_NUMBER_HELD,
    HoldsFull,
    LedgerStatement,
    LoggedRequest,
    PeriodSummary,
    PeriodUsage,
    RequestOutcome,
    Reservation,
    Tally,
    UserTally,
)
from infergate.domain.model_server import Completion, ModelEntry, Piece, said, thought
from infergate.domain.periods import day_of
from infergate.domain.pool import Departure, Holdings, Load, Route, Seat, ServerState, choose


class MemoryPool:
    """The pool's store: the domain's rule (`choose`), with leases, breakers and lines as the Redis
    script keeps them, on a clock of its own (`now`, ms) that `wait` moves on. `at(ms, event)`
    makes something happen (a slot given back, say) once the clock has reached `ms`."""

    def __init__(self, *, failures: int = 3, open_ms: int = 15_000, lease_ms: int = 30_000,
                 stale_ms: int = 2_000) -> None:
        self.now = 1_000_000
        self.failures, self.open_ms, self.lease_ms, self.stale_ms = failures, open_ms, lease_ms, stale_ms
        self.in_flight: dict[str, dict[str, int]] = {}  # server -> ticket -> when its lease ends
        self.breakers: dict[str, dict] = {}
        self.lines: dict[str, dict[str, int]] = {}  # server -> ticket -> when it arrived
        self.seen: dict[str, int] = {}
        self.conversations: dict[str, str] = {}
        self.departures: list[Departure] = []
        self.most_in_flight: dict[str, int] = {}  # the most each server ever held at once
        self.unavailable = False
        self._events: list[tuple[int, Callable[[], None]]] = []

    def clock(self) -> float:
        """The pool's time, in seconds, for the dispatcher."""
        return self.now / 1000

    def at(self, ms: int, event: Callable[[], None]) -> None:
        self._events.append((ms, event))

    def open_breaker(self, server: str) -> None:
        self.breakers[server] = {"state": "open", "until": self.now + self.open_ms}

    def place(self, route: Route, *, ticket: str, exclude: Sequence[str] = ()) -> Seat:
        self._check()
        loads, full, retry = {}, False, None
        slots = {c.server: c.slots for choice in route.choices for c in choice.candidates}
        for name in route.servers():
            state, wait = self._breaker(name)
            if state == "open":
                retry = wait if retry is None else min(retry, wait)
                continue
            if name in exclude:
                continue
            leases = self.in_flight.setdefault(name, {})
            for held in [t for t, ends in leases.items() if ends <= self.now]:
                del leases[held]
            loads[name] = Load(True, len(leases), self._ahead(name, ticket))
            full = full or len(leases) + loads[name].ahead >= slots[name]
        last = self.conversations.get(route.conversation or "") if route.continued else None
        placement = choose(route, loads, last=last, tick=self.now)
        if placement is not None:
            probe = self._breaker(placement.server)[0] == "probe"
            if probe:
                self.breakers[placement.server].update(state="half_open", probe_until=self.now + self.lease_ms)
            self.in_flight[placement.server][ticket] = self.now + self.lease_ms
            self.most_in_flight[placement.server] = max(self.most_in_flight.get(placement.server, 0),
                                                        len(self.in_flight[placement.server]))
            self.leave(route, ticket=ticket)
            return Seat(replace(placement, probe=probe))
        if not full:
            self.leave(route, ticket=ticket)
            return Seat(retry_ms=retry or 1000)
        for name in loads:
            self.lines.setdefault(name, {}).setdefault(ticket, self.now)
        self.seen[ticket] = self.now
        return Seat(waiting=True)

    def wait(self, ticket: str, seconds: float) -> None:
        self._check()
        self.now += int(min(seconds, 0.25) * 1000)
        for due in [event for event in self._events if event[0] <= self.now]:
            self._events.remove(due)
            due[1]()

    def leave(self, route: Route, *, ticket: str) -> None:
        for name in route.servers():
            self.lines.get(name, {}).pop(ticket, None)
        self.seen.pop(ticket, None)

    def release(self, departure: Departure, *, ticket: str) -> None:
        self._check()
        self.departures.append(departure)
        name = departure.placement.server
        self.in_flight.get(name, {}).pop(ticket, None)
        route = departure.route
        if departure.healthy and route is not None and route.conversation:
            self.conversations[route.conversation] = name
        breaker = self.breakers.setdefault(name, {"state": "closed"})
        if departure.healthy is None:
            if departure.placement.probe and breaker["state"] == "half_open":
                breaker["probe_until"] = 0
        elif departure.healthy:
            if breaker["state"] == "closed" or departure.placement.probe:
                self.breakers[name] = {"state": "closed"}
        elif departure.placement.probe or breaker["state"] == "half_open":
            self.breakers[name] = {"state": "open", "until": self.now + self.open_ms}
        elif breaker["state"] == "closed":
            breaker["failures"] = breaker.get("failures", 0) + 1
            if breaker["failures"] >= self.failures:
                self.breakers[name] = {"state": "open", "until": self.now + self.open_ms}

    def states(self, servers: Sequence[str]) -> list[ServerState]:
        self._check()
        return [ServerState(name, self._breaker(name)[0].replace("probe", "half_open"),
                            sum(ends > self.now for ends in self.in_flight.get(name, {}).values()), 0, 0, None)
                for name in servers]

    def _breaker(self, name: str) -> tuple[str, int]:
        breaker = self.breakers.get(name, {"state": "closed"})
        if breaker["state"] == "closed":
            return "closed", 0
        if breaker["state"] == "open" and self.now < breaker["until"]:
            return "open", breaker["until"] - self.now
        if breaker.get("probe_until", 0) > self.now:
            return "open", breaker["probe_until"] - self.now
        return "probe", 0

    def _ahead(self, name: str, ticket: str) -> int:
        line = self.lines.setdefault(name, {})
        for gone in [t for t in line if self.seen.get(t, 0) < self.now - self.stale_ms]:
            del line[gone]
        if ticket not in line:
            return len(line)
        return sum(arrived < line[ticket] or (arrived == line[ticket] and t < ticket) for t, arrived in line.items())

    def _check(self) -> None:
        if self.unavailable:
            raise RateLimiterUnavailable("down")


@dataclass
class MemoryLimitStore:
    """Counts per key like the Redis script, without windows; seats model calls in `pool`."""

    counted: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable: bool = False
    pool: MemoryPool = field(default_factory=MemoryPool)
    conclusions: list[Conclusion] = field(default_factory=list)
    in_flight: dict[str, set[str]] = field(default_factory=dict)  # slots taken, by their key

    def admit(self, limits, *, ticket, subject, key_id="", slots=None, route=None) -> Verdict:
        if self.unavailable:
            raise RateLimiterUnavailable("down")
        if route is not None and all(self.pool._breaker(name)[0] == "open" for name in route.servers()):
            return Verdict(False, (), 0, unavailable_ms=min(self.pool._breaker(name)[1] for name in route.servers()))
        used = [sum(self.counted.get(limit.key, {}).values()) for limit in limits]
        allowed = all(u + limit.cost <= limit.limit for u, limit in zip(used, limits, strict=True))
        slots_full = allowed and slots is not None and len(self.in_flight.get(slots.key, ())) >= slots.limit
        allowed = allowed and not slots_full
        seat = None
        if allowed:
            for limit in limits:
                self.counted.setdefault(limit.key, {})[ticket] = limit.cost
            if slots is not None:
                self.in_flight.setdefault(slots.key, set()).add(ticket)
            if route is not None:
                seat = self.pool.place(route, ticket=ticket)
        states = tuple(LimitState(limit.limit, limit.limit - u - (limit.cost if allowed else 0), 30_500)
                       for u, limit in zip(used, limits, strict=True))
        return Verdict(allowed, states, 0 if allowed or slots_full else 30_500, slots_full=slots_full, seat=seat)

    def conclude(self, conclusion: Conclusion) -> None:
        self.conclusions.append(conclusion)
        if conclusion.slots is not None:
            self.in_flight.get(conclusion.slots.key, set()).discard(conclusion.ticket)
        if conclusion.token_limit is not None:
            if conclusion.ticket in self.counted.get(conclusion.token_limit.key, {}):  # as the script: only what it counted
                self.counted[conclusion.token_limit.key][conclusion.ticket] = conclusion.tokens
        if conclusion.departure is not None:
            self.pool.release(conclusion.departure, ticket=conclusion.ticket)

    def model_reports(self) -> list[bool | None]:
        """How each concluded request's server did, as its breaker heard (None: not asked, or no server)."""
        return [c.departure.healthy if c.departure else None for c in self.conclusions]


@dataclass
class _Month:
    used: int
    holds: dict[str, Reservation]
    lines: list[LoggedRequest] = field(default_factory=list)
    requests: int = 0
    by_model: dict[str, Tally] = field(default_factory=dict)
    by_day: dict[str, Tally] = field(default_factory=dict)
    cost: int = 0  # micros


class MemoryLedger:
    """The usage ledger in memory: a month per user, each with its counter, its holds and its log.
    `used` and `held` say where every month starts (a user who has spent, or holds, so much already)."""

    def __init__(self, *, used: int = 0, held: dict[str, int] | None = None) -> None:
        self._start_used, self._start_held = used, dict(held or {})
        self._months: dict[tuple[str, str], _Month] = {}
        self.log: list[tuple[RequestOutcome, int]] = []  # every request recorded, and what it was charged
        self.reservations: list[Reservation] = []  # every hold granted, as granted
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Tokens charged, every month together (where they start, before any is touched)."""
        if not self._months:
            return self._start_used
        return sum(month.used for month in self._months.values())

    @property
    def held(self) -> dict[str, int]:
        """Every hold in place, by reservation id."""
        return {hold_id: hold.tokens for month in self._months.values() for hold_id, hold in month.holds.items()}

    def _month(self, user_id: str, period: str) -> _Month:
        key = (user_id, period)
        if key not in self._months:
            far_future = datetime.max.replace(tzinfo=UTC)
            self._months[key] = _Month(self._start_used, {
                hold_id: Reservation(hold_id, user_id, period, tokens, far_future)
                for hold_id, tokens in self._start_held.items()})
        return self._months[key]

    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime,
                most_held: int = ANY_NUMBER_HELD, worst=None) -> Reservation | None:
        if reservation.levels:
            raise NotImplementedError("levels (teams) are held by the MongoDB ledger alone")
        with self._lock:
            month = self._month(reservation.user_id, reservation.period)
            if reservation.reservation_id in month.holds:
                return None
            month.holds = {i: hold for i, hold in month.holds.items() if hold.expires_at > now}
            room = quota - month.used - sum(hold.tokens for hold in month.holds.values())
            if len(month.holds) >= most_held:
                raise HoldsFull(most_held)
            if room < minimum:
                return None
            granted = replace(reservation, tokens=min(reservation.tokens, room))
            month.holds[granted.reservation_id] = granted
            self.reservations.append(granted)
            return granted

    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        with self._lock:
            month = self._month(reservation.user_id, reservation.period)
            earlier = self._recorded(month, reservation.reservation_id)
            if earlier is not None:
                return earlier.charged
            charge = min(outcome.total_tokens, reservation.tokens)
            if month.holds.pop(reservation.reservation_id, None) is None:  # its hold expired and was dropped
                room = quota - month.used - sum(hold.tokens for hold in month.holds.values())
                charge = charge if charge <= room else 0
            self._record(month, reservation, outcome, charge)
            return charge

    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        with self._lock:
            month = self._month(reservation.user_id, reservation.period)
            if self._recorded(month, reservation.reservation_id) is None:
                month.holds.pop(reservation.reservation_id, None)
                self._record(month, reservation, outcome, 0)

    @staticmethod
    def _recorded(month: _Month, reservation_id: str) -> LoggedRequest | None:
        return next((line for line in month.lines if line.reservation_id == reservation_id), None)

    def _record(self, month: _Month, reservation: Reservation, outcome: RequestOutcome, charge: int) -> None:
        counted = outcome.counted(charge)
        cost = outcome.cost_micros(charge, held=reservation.micros)
        month.lines.append(LoggedRequest(
            reservation.reservation_id, len(month.lines) + 1, outcome.request_id, outcome.key_id, outcome.model,
            outcome.status, outcome.prompt_tokens if counted else 0, outcome.completion_tokens if counted else 0,
            charge, outcome.at, cost))
        self.log.append((outcome, charge))
        if counted:
            month.used += charge
            month.cost += cost
            month.requests += 1
            for tallies, key in ((month.by_model, outcome.model), (month.by_day, day_of(outcome.at))):
                earlier = tallies.get(key, Tally(0, 0))
                tallies[key] = Tally(earlier.tokens + charge, earlier.requests + 1, earlier.cost_micros + cost)

    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage:
        with self._lock:
            month = self._months.get((user_id, period)) or _Month(0, {})
            reserved = sum(hold.tokens for hold in month.holds.values() if hold.expires_at > now)
            return PeriodUsage(period, month.used, reserved, month.requests, dict(month.by_model), dict(month.by_day),
                               month.cost)

    def statement(self, user_id: str, period: str) -> LedgerStatement:
        with self._lock:
            month = self._months.get((user_id, period)) or _Month(0, {})
            return LedgerStatement(month.used, tuple(month.lines), month.cost)

    def period_summary(self, period: str, *, top: int) -> PeriodSummary:
        with self._lock:
            months = [(user, month) for (user, at), month in self._months.items() if at == period]
            heaviest = sorted(months, key=lambda pair: (-pair[1].used, pair[0]))[:top]
            return PeriodSummary(period, sum(month.used for _, month in months),
                                 sum(month.requests for _, month in months), len(months),
                                 [UserTally(user, month.used, month.requests, month.cost) for user, month in heaviest],
                                 sum(month.cost for _, month in months))


@dataclass
class ScriptedAnswer:
    """A streamed answer: `pieces` (of text, or Thoughts, as a thinking model streams them first),
    then `final` (by default the model server's counts for them, every piece a token, thoughts
    included). It notes which pieces were taken from it and whether it was closed early."""

    pieces: list[Piece]
    final: Completion | None = None
    taken: list[Piece] = field(default_factory=list)
    closed: bool = False
    completion: Completion | None = None
    prompt_tokens: int | None = None  # the prompt's count, as a server that says it while answering would

    def __iter__(self) -> Iterator[Piece]:
        for piece in self.pieces:
            if self.closed:
                return
            self.taken.append(piece)
            yield piece
        self.completion = self.final or Completion(
            "smollm2:135m", said(self.pieces), prompt_tokens=9, completion_tokens=len(self.pieces),
            done_reason="stop", pieces=tuple(self.pieces), thinking=thought(self.pieces))

    def close(self) -> None:
        self.closed = self.completion is None


@dataclass
class _RefusedThinking:
    """A stream whose model cannot think, refused as Ollama refuses it: a 400 read when the
    stream is first read, before any piece."""

    model: str
    completion: Completion | None = None
    prompt_tokens: int | None = None

    def __iter__(self) -> Iterator[Piece]:
        raise ThinkingUnsupported(f"The model '{self.model}' cannot think.", param="thinking")
        yield  # a generator: nothing is raised until it is read

    def close(self) -> None:
        pass


@dataclass
class ScriptedServer:
    """A model server that answers `completion` (or streams `answer`), or fails with `error`;
    it notes every call it was asked. With `cannot_think`, a call asked to think is refused with
    ThinkingUnsupported before anything is generated (and before `error`): when asked, as over
    OpenAI's API, or, for a stream with `refuses_when_read`, when it is first read, as Ollama's
    400 is."""

    completion: Completion | None = None
    error: Exception | None = None
    answer: ScriptedAnswer | None = None
    calls: list[dict] = field(default_factory=list)
    cannot_think: bool = False
    refuses_when_read: bool = False

    def chat(self, **kwargs) -> Completion:
        self.calls.append(kwargs)
        if self.cannot_think and kwargs.get("think"):
            raise ThinkingUnsupported(f"The model '{kwargs.get('model')}' cannot think.", param="thinking")
        if self.error:
            raise self.error
        assert self.completion is not None
        return self.completion

    def stream(self, **kwargs) -> ScriptedAnswer | _RefusedThinking:
        self.calls.append(kwargs)
        if self.cannot_think and kwargs.get("think"):
            if self.refuses_when_read:
                return _RefusedThinking(str(kwargs.get("model")))
            raise ThinkingUnsupported(f"The model '{kwargs.get('model')}' cannot think.", param="thinking")
        if self.error:
            raise self.error
        assert self.answer is not None
        return self.answer


@dataclass
class FixedCatalog:
    """What discovery found: each server named serves `names` (None: it was never reached), with
    `loaded` in memory."""

    names: list[str] | None = field(default_factory=lambda: ["smollm2:135m", "tiny:latest"])
    servers: tuple[str, ...] = ("ollama",)
    loaded: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def holdings(self) -> dict[str, Holdings]:
        models = None if self.names is None else tuple(ModelEntry(name, None) for name in self.names)
        return {name: Holdings(models, frozenset(self.loaded.get(name, ()))) for name in self.servers}


@dataclass
class RecordingTelemetry:
    """Counts and outcomes, as the domain reported them."""

    counts: dict[str, int] = field(default_factory=dict)
    outcomes: list[RequestOutcome] = field(default_factory=list)

    def count(self, metric: str, value: int = 1) -> None:
        self.counts[metric] = self.counts.get(metric, 0) + value

    def ended(self, outcome: RequestOutcome) -> None:
        self.outcomes.append(outcome)
