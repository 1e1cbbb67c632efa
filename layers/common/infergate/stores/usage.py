# Longer than 300 lines: reserving, settling, archiving and reading keep one document's invariants
# together (committed, the holds, the journal's numbering); apart, each would restate the others'.
"""Monthly token accounting in MongoDB, one document per user per month (its shape:
stores/usage_documents.py), no transactions.

Every write is safe to repeat: a hold is added only if the request has none,
a request is recorded only while it holds one, log lines are keyed by
reservation id. So the ledger retries a write itself, once, when the
connection fails, rather than through the server's retryable writes (whose
bookkeeping made secantusdb's per-write cost grow by half a millisecond for
every 20 s of load).

Reserving is one guarded update: the hold is added only if `committed` leaves room for the
request's worst case and the user holds fewer than `most_held` reservations (their requests in
flight: the plan's concurrency limit holds here whatever Redis loses, at no extra round trip).
When it does not (the quota is nearly spent, or expired holds still count), a second guarded
update drops the expired holds, counts again, and holds what remains if that is at least the
minimum the request needs and a hold is free. An abandoned reservation frees itself.

Settling (or releasing) is one guarded update too. Only while the request's
hold is in the document, so at most once, it drops the hold, charges the
real count (never more than was held, so never past the quota), updates the
tallies, and appends the request's log line to the journal: the counter and
the log change together, in one document. Concurrent requests of one user
never abort each other, as transactions on a shared document do; the server
applies their updates one after another.

The journal is always the tail of the month's log: its lines are numbered
`entries - len(journal) + 1` onwards. When `entries` reaches a multiple of
ARCHIVE_EVERY, the request that got there moves the journal into the
`request_log` collection: it copies the lines (keyed by reservation id, so a
repeat inserts nothing), then takes them out of the journal. A crash between
the two leaves lines in both places until the next archive; readers take each
line once. `statement` reads the month's document, then the archived lines
numbered up to its `entries`: a reading of one instant, whose lines sum to
its counter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime

from pymongo import ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

from infergate.domain.alerts import Alerts, NoAlerts
from infergate.domain.ledger import (
    ANY_NUMBER_HELD,
    HoldsFull,
    LedgerStatement,
    Level,
    LevelRefused,
    LevelUsage,
    PeriodSummary,
    PeriodUsage,
    RequestOutcome,
    Reservation,
    Share,
    UserTally,
)
from infergate.domain.periods import day_of, months_between
from infergate.domain.prices import NOTHING, WorstCost
from infergate.observability import logger
from infergate.stores.levels import Charge, MongoLevels, hold_op, level_month_id, settle_update
from infergate.stores.mongo import REQUEST_LOG, USAGE, unavailable_when_unreachable
from infergate.stores.usage_documents import (
    breakdown_pipeline,
    counts,
    days_breakdown_pipeline,
    log_line,
    logged_request,
    model_name,
    month_id,
    numbered,
    resized,
    sum_of_tokens,
    tallies,
    unexpired,
)

# Lines a journal gathers before they move to `request_log`: fewer means more archive
# writes; more means a larger document for every update of the month to rewrite.
ARCHIVE_EVERY = 16
# Times a refused reservation is tried again when its month shows that a request finished meanwhile.
_RETRIES = 3
_DUPLICATE_KEY = 11000


def _whole_hold(reservation: Reservation, *, quota: int, now: datetime, most_held: int) -> tuple[dict, dict]:
    """The guarded update that holds the whole of `reservation` in the user's month, if it fits the
    quota and a hold is free: its filter and its update."""
    hold = {"id": reservation.reservation_id, "tokens": reservation.tokens, "expires_at": reservation.expires_at}
    return ({"_id": month_id(reservation.user_id, reservation.period), "committed": {"$lte": quota - reservation.tokens},
             "reservations.id": {"$ne": reservation.reservation_id},
             f"reservations.{most_held - 1}": {"$exists": False}},  # fewer than most_held, expired or not
            {"$inc": {"committed": reservation.tokens}, "$push": {"reservations": hold}, "$set": {"updated_at": now}})


class MongoUsageLedger:
    def __init__(self, database: Database, *, archive_every: int = ARCHIVE_EVERY,
                 alerts: Alerts | NoAlerts = NoAlerts()) -> None:
        """`alerts`: told of each charge to a level (a team, a key) and how far it took the month."""
        self._usage = database[USAGE]
        self._log = database[REQUEST_LOG]
        self._archive_every = archive_every
        self._levels = MongoLevels(self._usage, self._charged)
        self._alerts = alerts

    # -- reserving ----------------------------------------------------------

    @unavailable_when_unreachable
    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime,
                most_held: int = ANY_NUMBER_HELD, worst: WorstCost = NOTHING) -> Reservation | None:
        if reservation.levels:
            try:
                return self._reserve_with_levels(reservation, minimum=minimum, quota=quota, now=now,
                                                 most_held=most_held, worst=worst)
            except ConnectionFailure:
                self._resize(reservation, None)  # whatever the first attempt held, then once more
                return self._reserve_with_levels(reservation, minimum=minimum, quota=quota, now=now,
                                                 most_held=most_held, worst=worst)
        try:
            return self._reserve(reservation, minimum=minimum, quota=quota, now=now, most_held=most_held)
        except ConnectionFailure:
            # Once more, unless the first attempt reached the server before the connection failed.
            held = self._held(reservation)
            if held is not None:
                return replace(reservation, tokens=held)
            return self._reserve(reservation, minimum=minimum, quota=quota, now=now, most_held=most_held)

    def _reserve_with_levels(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime,
                             most_held: int, worst: WorstCost) -> Reservation | None:
        """The user's hold and each level's: in one bulk write while everything fits (as many round
        trips as a user with no team), else one after another, each capped to what remains."""
        whole = [UpdateOne(*_whole_hold(reservation, quota=quota, now=now, most_held=most_held)),
                 *(hold_op(level, reservation, now) for level in reservation.levels)]
        if self._usage.bulk_write(whole, ordered=False).matched_count == len(whole):
            return reservation
        self._resize(reservation, None)  # drop what the bulk write held anywhere
        held = self._reserve(reservation, minimum=minimum, quota=quota, now=now, most_held=most_held, whole=False)
        if held is None:
            return None
        try:
            for level in reservation.levels:
                held = self._levels.hold(level, held, minimum=minimum, now=now, worst=worst)
        except LevelRefused:
            self._resize(reservation, None)
            raise
        self._resize(held, (held.tokens, held.micros or 0))  # a later level may have held less: all hold that
        return held

    def _resize(self, reservation: Reservation, size: tuple[int, int] | None) -> None:
        """Make the request's hold at its user's month and at each level `size` (tokens, micros), or
        drop it where it is held (None)."""
        ids = [month_id(reservation.user_id, reservation.period),
               *(level_month_id(level, reservation.period) for level in reservation.levels)]
        self._usage.update_many({"_id": {"$in": ids}, "reservations.id": reservation.reservation_id},
                                resized(reservation.reservation_id, size))

    def _reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime,
                 most_held: int, whole: bool = True) -> Reservation | None:
        """The user's hold; `whole`: try the whole of it first (not tried yet)."""
        document_id = month_id(reservation.user_id, reservation.period)
        if whole:
            if self._usage.update_one(*_whole_hold(reservation, quota=quota, now=now, most_held=most_held)).matched_count:
                return reservation
        remains = {"minimum": minimum, "quota": quota, "now": now, "most_held": most_held}
        held = self._reserve_what_remains(document_id, reservation, **remains)
        if held is None:
            # Too little remains, or this is the month's first request. The guarded update
            # does not upsert (an upsert that loses a race cannot tell "did not fit" from
            # "applied" on every server): the month is created on its own, and tried again.
            self._create_month(reservation, now)
            held = self._reserve_what_remains(document_id, reservation, **remains)
        for _ in range(_RETRIES):
            if held is not None:
                return replace(reservation, tokens=held)
            holds, room = self._standing(document_id, quota, now)
            if holds >= most_held:
                raise HoldsFull(most_held)
            if room < minimum:
                return None
            # Refused, yet a hold is free and room enough remains: a request of the user's
            # finished in between. Refused for the wrong reason, it is tried again.
            held = self._reserve_what_remains(document_id, reservation, **remains)
        return None if held is None else replace(reservation, tokens=held)

    def _standing(self, document_id: str, quota: int, now: datetime) -> tuple[int, int]:
        """How many unexpired reservations the month holds, and what room they leave of `quota`:
        read only once a reservation is refused, to tell why."""
        document = self._usage.find_one({"_id": document_id}, {"reservations": 1, "tokens_used": 1}) or {}
        holds = [hold for hold in document.get("reservations", ()) if hold["expires_at"] > now]
        return len(holds), quota - document.get("tokens_used", 0) - sum(hold["tokens"] for hold in holds)

    def _reserve_what_remains(self, document_id: str, reservation: Reservation, *, minimum: int, quota: int,
                              now: datetime, most_held: int) -> int | None:
        """Drop expired holds, then hold as much of the worst case as remains, if at least
        `minimum` does and fewer than `most_held` holds are left. The tokens held, or None."""
        used = {"$ifNull": ["$tokens_used", 0]}
        room = {"$subtract": [quota, {"$add": [used, sum_of_tokens("$_holds")]}]}
        tokens = {"$min": [reservation.tokens, "$_room"]}
        hold = {"id": reservation.reservation_id, "tokens": tokens, "expires_at": reservation.expires_at}
        document = self._usage.find_one_and_update(
            {"_id": document_id, "reservations.id": {"$ne": reservation.reservation_id}, "$expr": {"$and": [
                {"$gte": [{"$subtract": [quota, {"$add": [used, sum_of_tokens(unexpired(now))]}]}, minimum]},
                {"$lt": [{"$size": unexpired(now)}, most_held]}]}},
            [
                {"$set": {"_holds": unexpired(now)}},
                {"$set": {"_room": room}},
                {"$set": {"reservations": {"$concatArrays": ["$_holds", [hold]]},
                          "committed": {"$add": [used, sum_of_tokens("$_holds"), tokens]}, "updated_at": now}},
                {"$unset": ["_holds", "_room"]},
            ],
            return_document=ReturnDocument.AFTER, projection={"reservations": 1},
        )
        if document is None:
            return None
        return next(r["tokens"] for r in document["reservations"] if r["id"] == reservation.reservation_id)

    def _held(self, reservation: Reservation) -> int | None:
        """The tokens `reservation` holds, or None if it holds none."""
        document = self._usage.find_one(
            {"_id": month_id(reservation.user_id, reservation.period), "reservations.id": reservation.reservation_id},
            {"reservations.$": 1})
        return document["reservations"][0]["tokens"] if document else None

    def _create_month(self, reservation: Reservation, now: datetime) -> None:
        try:
            self._usage.update_one({"_id": month_id(reservation.user_id, reservation.period)}, {"$setOnInsert": {
                "user_id": reservation.user_id, "period": reservation.period, "tokens_used": 0, "committed": 0,
                "requests": 0, "entries": 0, "reservations": [], "journal": [], "created_at": now,
            }}, upsert=True)
        except DuplicateKeyError:
            pass  # created a moment ago by a concurrent request

    # -- settling and releasing ------------------------------------------------

    @unavailable_when_unreachable
    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        # Never more than was held: the hold fitted the quota, so the charge does too. What
        # does not fit (only if the model used more than it was allowed) is logged as unbilled.
        charge = self._record(reservation, outcome, charge=min(outcome.total_tokens, reservation.tokens), quota=quota)
        self._settle_levels(reservation, outcome, charge)
        return charge

    @unavailable_when_unreachable
    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        self._record(reservation, outcome, charge=0, quota=None)
        self._settle_levels(reservation, outcome, 0)

    def _settle_levels(self, reservation: Reservation, outcome: RequestOutcome, charge: int) -> None:
        """Charge each level what the user's month was charged: one more round trip, once per level.
        Run again after a failure, it charges only the levels not charged yet."""
        if not reservation.levels:
            return
        cost = outcome.cost_micros(charge, held=reservation.micros)
        charged = Charge(charge, cost, day_of(outcome.at), outcome.counted(charge))
        for level in reservation.levels:  # one round trip each: a team member's chat pays one
            guard, update = settle_update(level, reservation, charged)
            totals = {"return_document": ReturnDocument.AFTER, "projection": {"tokens_used": 1, "cost_micros": 1}}
            try:
                after = self._usage.find_one_and_update(guard, update, **totals)
            except ConnectionFailure:  # once more: it applies only while its hold is there
                after = self._usage.find_one_and_update(guard, update, **totals)
            if after is not None and (charge or cost):
                now = (after.get("tokens_used", 0), after.get("cost_micros", 0))
                self._alerts.charged(level, reservation.period, (now[0] - charge, now[1] - cost), now)

    def _charged(self, user_id: str, period: str, reservation_id: str) -> Charge | None:
        """What the request log says a request was charged, or None if it has no line."""
        line = self._recorded(month_id(user_id, period), reservation_id)
        if line is None:
            return None
        charge = line["total_tokens"]
        return Charge(charge, line.get("cost_micros", 0), line["day"], line["status"] == "ok" or charge > 0)

    def _record(self, reservation: Reservation, outcome: RequestOutcome, *, charge: int, quota: int | None) -> int:
        """Drop the hold, charge `charge` and log the request: at most once. The tokens charged."""
        try:
            return self._record_once(reservation, outcome, charge=charge, quota=quota)
        except ConnectionFailure:
            # Once more: if the first attempt reached the server, the hold is gone and its line says so.
            return self._record_once(reservation, outcome, charge=charge, quota=quota)

    def _record_once(self, reservation: Reservation, outcome: RequestOutcome, *, charge: int, quota: int | None) -> int:
        document_id = month_id(reservation.user_id, reservation.period)
        recorded = self._usage.find_one_and_update(
            {"_id": document_id, "reservations.id": reservation.reservation_id},
            {"$pull": {"reservations": {"id": reservation.reservation_id}},
             "$inc": {"committed": charge - reservation.tokens, **counts(reservation, outcome, charge)},
             "$push": {"journal": log_line(reservation, outcome, charge)}, "$set": {"updated_at": outcome.at}},
            return_document=ReturnDocument.AFTER, projection={"entries": 1},
        )
        if recorded is None:
            earlier = self._recorded(document_id, reservation.reservation_id)
            if earlier is not None:
                return earlier["total_tokens"]  # recorded before: a repeat changes nothing
            recorded, charge = self._record_late(document_id, reservation, outcome, charge=charge, quota=quota)
        if recorded is not None and recorded["entries"] % self._archive_every == 0:
            self._archive(document_id)
        return charge

    def _record_late(self, document_id: str, reservation: Reservation, outcome: RequestOutcome, *,
                     charge: int, quota: int | None) -> tuple[dict | None, int]:
        """A request whose hold expired and was dropped before it finished (it ran far past any
        function's timeout): charged what it used if that still fits the quota, else logged unbilled."""
        logger.warning("request recorded after its reservation expired", extra={"reservation_id": reservation.reservation_id})
        not_yet = {"_id": document_id, "journal._id": {"$ne": reservation.reservation_id}}
        for attempt in (charge, 0):
            fits = {} if quota is None or not attempt else {"committed": {"$lte": quota - attempt}}
            recorded = self._usage.find_one_and_update(
                {**not_yet, **fits},
                {"$inc": {"committed": attempt, **counts(reservation, outcome, attempt)},
                 "$push": {"journal": log_line(reservation, outcome, attempt)}, "$set": {"updated_at": outcome.at}},
                return_document=ReturnDocument.AFTER, projection={"entries": 1},
            )
            if recorded is not None:
                return recorded, attempt
        return None, 0

    def _recorded(self, document_id: str, reservation_id: str) -> dict | None:
        """The log line of a reservation already recorded, in the journal or archived."""
        document = self._usage.find_one({"_id": document_id, "journal._id": reservation_id}, {"journal": 1})
        if document is not None:
            return next(line for line in document["journal"] if line["_id"] == reservation_id)
        return self._log.find_one({"_id": reservation_id})

    # -- archiving ---------------------------------------------------------------

    def _archive(self, document_id: str) -> None:
        """Move the journal's lines to `request_log`: copy, then take them out of the journal."""
        try:
            document = self._usage.find_one({"_id": document_id}, {"journal": 1, "entries": 1, "user_id": 1, "period": 1})
            lines = numbered(document or {})
            if lines:
                self._copy_to_log([{**line, "user_id": document["user_id"], "period": document["period"]} for line in lines])
                self._drop_from_journal(document_id, [line["_id"] for line in lines])
        except PyMongoError as error:
            # The chat is done and its line is safe in the journal; the next archive moves it.
            logger.warning("request log not archived", extra={"error": type(error).__name__})

    def _copy_to_log(self, lines: list[dict]) -> None:
        try:
            self._log.insert_many(lines, ordered=False)
        except BulkWriteError as error:
            # Lines an earlier archive copied before it was cut short are there already.
            if any(failure["code"] != _DUPLICATE_KEY for failure in error.details.get("writeErrors", [])):
                raise

    def _drop_from_journal(self, document_id: str, reservation_ids: list[str]) -> None:
        self._usage.update_one({"_id": document_id}, {"$pull": {"journal": {"_id": {"$in": reservation_ids}}}})

    # -- reading -------------------------------------------------------------------

    @unavailable_when_unreachable
    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage:
        document = self._usage.find_one({"_id": month_id(user_id, period)}, {"journal": 0}) or {}
        return PeriodUsage(
            period=period,
            tokens_used=document.get("tokens_used", 0),
            tokens_reserved=sum(r["tokens"] for r in document.get("reservations", []) if r["expires_at"] > now),
            requests=document.get("requests", 0),
            by_model=tallies(document, "models", legacy="by_model", decode=model_name),
            by_day=tallies(document, "days", legacy="by_day"),
            cost_micros=document.get("cost_micros", 0),
        )

    @unavailable_when_unreachable
    def period_summary(self, period: str, *, top: int) -> PeriodSummary:
        totals = next(self._usage.aggregate([
            {"$match": {"period": period, "user_id": {"$exists": True}}},  # users' months, not teams'
            {"$group": {"_id": None, "tokens": {"$sum": "$tokens_used"}, "requests": {"$sum": "$requests"},
                        "cost": {"$sum": "$cost_micros"}, "users": {"$sum": 1}}},
        ]), {"tokens": 0, "requests": 0, "cost": 0, "users": 0})
        heaviest = self._usage.find({"period": period, "user_id": {"$exists": True}}, {"user_id": 1, "tokens_used": 1, "requests": 1,
                                                         "cost_micros": 1}).sort([("tokens_used", -1), ("_id", 1)]).limit(top)
        return PeriodSummary(
            period=period, tokens_used=totals["tokens"], requests=totals["requests"], users=totals["users"],
            top=[UserTally(month["user_id"], month.get("tokens_used", 0), month.get("requests", 0),
                           month.get("cost_micros", 0)) for month in heaviest],
            cost_micros=totals["cost"],
        )

    @unavailable_when_unreachable
    def level_usage(self, level: Level, period: str, *, now: datetime) -> LevelUsage:
        return self._levels.usage(level, period, now=now)

    @unavailable_when_unreachable
    def breakdown(self, period: str, by: str) -> list[Share]:
        return _shares(self._usage.aggregate(breakdown_pipeline(period, by)), by)

    @unavailable_when_unreachable
    def breakdown_days(self, start: date, end: date, by: str) -> list[Share]:
        pipeline = days_breakdown_pipeline(months_between(start, end), start.isoformat(), end.isoformat(), by)
        return _shares(self._usage.aggregate(pipeline), by)

    @unavailable_when_unreachable
    def statement(self, user_id: str, period: str) -> LedgerStatement:
        # The month's document first: every line numbered up to its `entries` is then either
        # in its journal or, copied before it left the journal, in request_log.
        document = self._usage.find_one({"_id": month_id(user_id, period)},
                                        {"tokens_used": 1, "cost_micros": 1, "entries": 1, "journal": 1}) or {}
        lines = {line["_id"]: line for line in self._log.find({
            "user_id": user_id, "period": period,
            # Lines logged before lines were numbered have no `seq`.
            "$or": [{"seq": {"$lte": document.get("entries", 0)}}, {"seq": {"$exists": False}}],
        })}
        for line in numbered(document):
            lines.setdefault(line["_id"], line)
        logged = sorted((logged_request(line) for line in lines.values()), key=lambda entry: entry.seq)
        return LedgerStatement(tokens_used=document.get("tokens_used", 0), log=tuple(logged),
                               cost_micros=document.get("cost_micros", 0))


def _shares(grouped: Iterable[dict], by: str) -> list[Share]:
    """A breakdown's groups as shares: a model's or a key's name as it was before it became a field name."""
    return [Share(model_name(share["_id"]) if by in ("model", "key") else share["_id"], share["tokens"],
                  share["requests"], share["cost"]) for share in grouped]
