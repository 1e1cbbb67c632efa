"""The months of the limits above a user's own (a team's: domain/ledger.Level) in MongoDB, in
the users' months' collection so that one bulk write reaches a user's month and their team's:

  {_id: "<kind>:<id>:<YYYY-MM>", level: <kind>, level_id, period,
   tokens_used, cost_micros, requests,       what its requests were charged
   days: {<YYYY-MM-DD>: {tokens, cost_micros, requests}},   the same, by day
   committed, committed_micros,              the same, and every hold listed below
   reservations: [{id, user_id, tokens, micros, expires_at}, ...], version}

A request holds at its levels what it holds at its user's month: on the fast path, in the same
round trip as the user's hold (a guarded update each, in one bulk write); near a limit, by
reading the month and writing it back only if its `version` did not change meanwhile, which
caps the hold to what both the tokens and the budget leave. Settling is a guarded update per
level, as for the user: only while the request's hold is there, so at most once.

A hold that expires unsettled sends the next request at that level down the slow path, which
reads the month and drops the hold; if its request was charged at its user's month (its line is
in the request log: the function died between the two writes), the level is charged the same
(tokens, cost, a request, its day) as it is dropped, so that every level's counters are the sum
of its members' log lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from infergate.domain.ledger import Level, LevelRefused, LevelUsage, Reservation
from infergate.domain.prices import WorstCost

# Times a hold near a limit reads and writes the month again when another request changed it first.
_ATTEMPTS = 8
_UNBOUNDED = 1 << 62


def level_month_id(level: Level, period: str) -> str:
    return f"{level.kind}:{level.id}:{period}"


def hold_op(level: Level, reservation: Reservation, now: datetime) -> UpdateOne:
    """Hold the whole of `reservation` at `level`, if it fits and none of its holds has expired:
    the fast path, for a bulk write. A month with an expired hold takes the slow path, which
    repairs it (the hold's request may have been charged at its user's month, not yet here)."""
    guard: dict = {"_id": level_month_id(level, reservation.period), "reservations.id": {"$ne": reservation.reservation_id},
                   "reservations.expires_at": {"$not": {"$lte": now}}}
    if level.token_quota is not None:
        guard["committed"] = {"$lte": level.token_quota - reservation.tokens}
    if level.budget_micros is not None:
        guard["committed_micros"] = {"$lte": level.budget_micros - (reservation.micros or 0)}
    return UpdateOne(guard, {"$inc": {"committed": reservation.tokens, "committed_micros": reservation.micros or 0,
                                      "version": 1},
                             "$push": {"reservations": _hold(reservation)}})


def settle_update(level: Level, reservation: Reservation, charge: Charge) -> tuple[dict, dict]:
    """Charge the request `charge` at `level` and drop its hold, once: the guarded update's filter
    and update."""
    return (
        {"_id": level_month_id(level, reservation.period), "reservations.id": reservation.reservation_id},
        {"$pull": {"reservations": {"id": reservation.reservation_id}},
         "$inc": {"committed": charge.tokens - reservation.tokens,
                  "committed_micros": charge.micros - (reservation.micros or 0), **charge.counts(), "version": 1}})


@dataclass(frozen=True)
class Charge:
    """What a request was charged at its user's month, which each of its levels is charged too."""

    tokens: int
    micros: int
    day: str  # YYYY-MM-DD: the day's tally it counts in
    counted: bool  # whether it counts as a request (domain/ledger.RequestOutcome.counted)

    def counts(self) -> dict[str, int]:
        """What it adds to a level's month: its totals, and its day's tally."""
        if not self.counted:
            return {}
        return {"tokens_used": self.tokens, "cost_micros": self.micros, "requests": 1,
                f"days.{self.day}.tokens": self.tokens, f"days.{self.day}.cost_micros": self.micros,
                f"days.{self.day}.requests": 1}


def _hold(reservation: Reservation) -> dict:
    return {"id": reservation.reservation_id, "user_id": reservation.user_id, "tokens": reservation.tokens,
            "micros": reservation.micros or 0, "expires_at": reservation.expires_at}


class MongoLevels:
    def __init__(self, usage: Collection, charged: Callable[[str, str, str], Charge | None]) -> None:
        """`charged(user_id, period, reservation_id)`: what the request log says a request was
        charged, or None if it has no line."""
        self._usage, self._charged = usage, charged

    def hold(self, level: Level, wanted: Reservation, *, minimum: int, now: datetime, worst: WorstCost) -> Reservation:
        """Hold as much of `wanted` as `level` leaves, not less than `minimum` tokens: the
        reservation as held there (its tokens and micros capped; `worst`: what a number of its
        tokens may cost). LevelRefused if less than `minimum` remains."""
        month_id = level_month_id(level, wanted.period)
        for _ in range(_ATTEMPTS):
            month = self._month(month_id, level, wanted.period, now)
            held, expired = _split(month.get("reservations", []), now)
            repairs = self._repairs(expired, wanted.period)
            used = month.get("tokens_used", 0) + sum(charge.tokens for charge in repairs)
            cost = month.get("cost_micros", 0) + sum(charge.micros for charge in repairs)
            room = (_room(level.token_quota, used, held, "tokens"), _room(level.budget_micros, cost, held, "micros"))
            tokens = _affordable(min(wanted.tokens, room[0]), room[1], worst)
            if tokens < minimum:
                raise _refusal(level, worst(minimum), used=used, cost=cost, room=room, minimum=minimum)
            granted = replace(wanted, tokens=tokens, micros=min(wanted.micros or 0, worst(tokens)))
            if self._write(month, held, granted, repairs):
                return granted
        raise LevelRefused(level, "tokens", in_flight=True, remaining=0)  # too busy to tell: retry shortly

    def _month(self, month_id: str, level: Level, period: str, now: datetime) -> dict:
        month = self._usage.find_one({"_id": month_id})
        if month is not None:
            return month
        try:
            self._usage.insert_one({"_id": month_id, "level": level.kind, "level_id": level.id, "period": period,
                                    "tokens_used": 0, "cost_micros": 0, "requests": 0, "committed": 0,
                                    "committed_micros": 0, "reservations": [], "version": 0, "created_at": now})
        except DuplicateKeyError:
            pass  # made a moment ago by a concurrent request
        return self._usage.find_one({"_id": month_id})

    def _repairs(self, expired: list[dict], period: str) -> list[Charge]:
        """The charges of the month's expired holds whose requests were charged at their user's
        month (the function died before charging the level); the others cost nothing."""
        charges = (self._charged(hold["user_id"], period, hold["id"]) for hold in expired)
        return [charge for charge in charges if charge is not None]

    def _write(self, month: dict, held: list[dict], granted: Reservation, repairs: list[Charge]) -> bool:
        """Write the month back with `granted` held and its expired holds dropped, charged what
        `repairs` say, if no other request changed it since it was read."""
        holds = [*held, _hold(granted)]
        counts: Counter[str] = Counter({"version": 1})
        for charge in repairs:
            counts.update(charge.counts())
        used, cost = month.get("tokens_used", 0) + counts["tokens_used"], month.get("cost_micros", 0) + counts["cost_micros"]
        written = self._usage.update_one(
            {"_id": month["_id"], "version": month.get("version", 0)},
            {"$set": {"reservations": holds, "committed": used + sum(hold["tokens"] for hold in holds),
                      "committed_micros": cost + sum(hold["micros"] for hold in holds)},
             "$inc": dict(counts)})
        return written.matched_count == 1

    def usage(self, level: Level, period: str, *, now: datetime) -> LevelUsage:
        month = self._usage.find_one({"_id": level_month_id(level, period)}) or {}
        held, _ = _split(month.get("reservations", []), now)
        return LevelUsage(period=period, tokens_used=month.get("tokens_used", 0), cost_micros=month.get("cost_micros", 0),
                          tokens_reserved=sum(hold["tokens"] for hold in held),
                          micros_reserved=sum(hold["micros"] for hold in held), requests=month.get("requests", 0))


def _split(holds: list[dict], now: datetime) -> tuple[list[dict], list[dict]]:
    """The holds still live, and those that expired."""
    return [hold for hold in holds if hold["expires_at"] > now], [hold for hold in holds if hold["expires_at"] <= now]


def _room(limit: int | None, spent: int, held: list[dict], field: str) -> int:
    return _UNBOUNDED if limit is None else limit - spent - sum(hold[field] for hold in held)


def _affordable(tokens: int, micros: int, worst: WorstCost) -> int:
    """The most of `tokens` whose dearest cost fits `micros`."""
    if worst(tokens) <= micros:
        return tokens
    low, high = 0, tokens  # the cost grows with the tokens: the largest that fits, by halving
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if worst(middle) <= micros else (low, middle - 1)
    return low


def _refusal(level: Level, needs: int, *, minimum: int, used: int, cost: int, room: tuple[int, int]) -> LevelRefused:
    """Why `level` cannot hold `minimum` tokens, which may cost `needs` micros: its tokens or its
    budget (the one short), spent, or held by requests in flight (`room`: what the holds leave)."""
    if level.token_quota is not None and level.token_quota - used < minimum:
        return LevelRefused(level, "tokens", in_flight=False, remaining=max(0, level.token_quota - used))
    if level.budget_micros is not None and level.budget_micros - cost < needs:
        return LevelRefused(level, "budget", in_flight=False, remaining=max(0, level.budget_micros - cost))
    if room[0] < minimum:
        return LevelRefused(level, "tokens", in_flight=True, remaining=max(0, room[0]))
    return LevelRefused(level, "budget", in_flight=True, remaining=max(0, room[1]))
