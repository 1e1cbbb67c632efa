"""Monthly token accounting in MongoDB, one document per user per month, no transactions.

  {_id: "<user_id>:<YYYY-MM>", user_id, period, tokens_used, requests, entries,
   reservations: [{id, tokens, expires_at}, ...],
   by_model: [{key, tokens, requests}, ...], by_day: [{key, tokens, requests}, ...],
   journal: [<request log line>, ...]}

Reserving is one guarded update: counting only unexpired reservations, it
holds as much of the request's worst case as remains (never less than the
minimum the request needs), and drops expired holds as it goes, so an
abandoned reservation frees itself with no job to run.

Settling (or releasing) is one guarded update too. Only while the request's
hold is in the document, so at most once, it drops the hold, charges the
real count (never past the quota), updates the tallies, and appends the
request's log line, numbered (`seq`), to the journal: the counter and the log
change together, in one document. Concurrent requests of one user therefore
never abort each other as transactions on a shared document do; the server
applies their updates one after another.

When a month's line number reaches a multiple of ARCHIVE_EVERY, the request
that wrote it moves the journal into the `request_log` collection: it copies
the lines there (upserts keyed by reservation id, so a repeat changes
nothing), then takes them out of the journal. A crash between the two leaves
lines in both places until the next archive; readers take each line once.
The request log is the `request_log` lines plus the journal, and
`statement` reads both as of one instant: its lines sum to its counter.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from infergate.domain.periods import day_of
from infergate.domain.ports import LedgerStatement, LoggedRequest, PeriodUsage, RequestOutcome, Reservation, Tally
from infergate.observability import logger
from infergate.stores.mongo import REQUEST_LOG, USAGE, unavailable_when_unreachable

# Lines a journal gathers before they move to `request_log`: fewer means more archive
# writes; more means a larger document for every update of the month to rewrite.
ARCHIVE_EVERY = 16
_DUPLICATE_KEY = 11000

_USED = {"$ifNull": ["$tokens_used", 0]}
_REQUESTS = {"$ifNull": ["$requests", 0]}


def _document_id(user_id: str, period: str) -> str:
    return f"{user_id}:{period}"


def _holds(now: datetime, *, excluding: str | None = None) -> dict:
    """The reservations still in force at `now` (optionally all but one)."""
    condition: dict = {"$gt": ["$$r.expires_at", now]}
    if excluding is not None:
        condition = {"$and": [condition, {"$ne": ["$$r.id", excluding]}]}
    return {"$filter": {"input": {"$ifNull": ["$reservations", []]}, "as": "r", "cond": condition}}


def _room(quota: int, now: datetime, *, excluding: str | None = None) -> dict:
    """quota - used - held: what could still be charged this month."""
    held = {"$sum": {"$map": {"input": _holds(now, excluding=excluding), "as": "r", "in": "$$r.tokens"}}}
    return {"$subtract": [quota, {"$add": [_USED, held]}]}


def _tally(field: str, key: str, tokens: dict | int) -> dict:
    """`field` (a list of {key, tokens, requests}) with one more request of `tokens` under `key`."""
    entries = {"$ifNull": [f"${field}", []]}
    return {"$cond": [
        {"$in": [key, {"$map": {"input": entries, "as": "e", "in": "$$e.key"}}]},
        {"$map": {"input": entries, "as": "e", "in": {"$cond": [
            {"$eq": ["$$e.key", key]},
            {"key": key, "tokens": {"$add": ["$$e.tokens", tokens]}, "requests": {"$add": ["$$e.requests", 1]}},
            "$$e",
        ]}}},
        {"$concatArrays": [entries, [{"key": key, "tokens": tokens, "requests": 1}]]},
    ]}


class MongoUsageLedger:
    def __init__(self, database: Database, *, archive_every: int = ARCHIVE_EVERY) -> None:
        self._usage = database[USAGE]
        self._log = database[REQUEST_LOG]
        self._archive_every = archive_every

    @unavailable_when_unreachable
    def reserve(self, reservation: Reservation, *, minimum: int, quota: int, now: datetime) -> Reservation | None:
        hold = {"id": reservation.reservation_id, "tokens": {"$min": [reservation.tokens, _room(quota, now)]},
                "expires_at": reservation.expires_at}
        update = [{"$set": {"reservations": {"$concatArrays": [_holds(now), [hold]]}, "updated_at": now}}]
        document_id = _document_id(reservation.user_id, reservation.period)
        guard = {"_id": document_id, "$expr": {"$gte": [_room(quota, now), minimum]}}
        document = self._usage.find_one_and_update(
            guard, update, return_document=ReturnDocument.AFTER, projection={"reservations": 1}
        )
        if document is None:
            # It does not fit, or this is the month's first request. The guarded update does
            # not upsert (an upsert that loses a race cannot tell "did not fit" from "applied"
            # on every server): the month's document is created on its own, and the update tried again.
            self._create_month(reservation, now)
            document = self._usage.find_one_and_update(
                guard, update, return_document=ReturnDocument.AFTER, projection={"reservations": 1}
            )
        if document is None:
            return None
        held = next(r for r in document["reservations"] if r["id"] == reservation.reservation_id)
        return replace(reservation, tokens=held["tokens"])

    def _create_month(self, reservation: Reservation, now: datetime) -> None:
        try:
            self._usage.update_one({"_id": _document_id(reservation.user_id, reservation.period)}, {"$setOnInsert": {
                "user_id": reservation.user_id, "period": reservation.period, "tokens_used": 0, "requests": 0,
                "entries": 0, "reservations": [], "journal": [], "created_at": now,
            }}, upsert=True)
        except DuplicateKeyError:
            pass  # created a moment ago by a concurrent request

    @unavailable_when_unreachable
    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        return self._record(reservation, outcome, quota=quota)

    @unavailable_when_unreachable
    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        self._record(reservation, outcome, quota=None)

    def _record(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int | None) -> int:
        """Drop the hold, charge the request if it succeeded, and log it: at most once. The tokens charged."""
        document_id = _document_id(reservation.user_id, reservation.period)
        update = _recording(reservation, outcome, quota)
        line = self._append(document_id, {"reservations.id": reservation.reservation_id}, update)
        if line is None:
            line = self._recorded(document_id, reservation.reservation_id)
            if line is not None:
                return line["total_tokens"]  # recorded before: a repeat changes nothing
            # The hold expired and a later reservation dropped it: the request ran long past
            # any function's timeout. It is still charged what it used, within the quota.
            logger.warning("request recorded after its reservation expired",
                           extra={"reservation_id": reservation.reservation_id})
            line = self._append(document_id, {"journal._id": {"$ne": reservation.reservation_id}}, update)
            if line is None:
                line = self._recorded(document_id, reservation.reservation_id) or {"total_tokens": 0, "seq": 0}
        if line["seq"] and line["seq"] % self._archive_every == 0:
            self._archive(document_id)
        return line["total_tokens"]

    def _append(self, document_id: str, guard: dict, update: list[dict]) -> dict | None:
        """Apply `update` if `guard` holds; the log line it appended, or None."""
        document = self._usage.find_one_and_update(
            {"_id": document_id, **guard}, update, return_document=ReturnDocument.AFTER,
            projection={"journal": {"$slice": -1}},
        )
        return document["journal"][-1] if document else None

    def _recorded(self, document_id: str, reservation_id: str) -> dict | None:
        """The log line of a reservation already recorded, in the journal or archived."""
        document = self._usage.find_one({"_id": document_id, "journal._id": reservation_id}, {"journal": 1})
        if document is not None:
            return next(line for line in document["journal"] if line["_id"] == reservation_id)
        return self._log.find_one({"_id": reservation_id})

    def _archive(self, document_id: str) -> None:
        """Move the journal's lines to `request_log`: copy, then take them out of the journal."""
        try:
            document = self._usage.find_one({"_id": document_id}, {"journal": 1, "user_id": 1, "period": 1}) or {}
            lines = document.get("journal") or []
            if lines and self._copy_to_log(lines, user_id=document["user_id"], period=document["period"]):
                self._drop_from_journal(document_id, [line["_id"] for line in lines])
        except PyMongoError as error:
            # The chat is done and its line is safe in the journal; the next archive moves it.
            logger.warning("request log not archived", extra={"error": type(error).__name__})

    def _copy_to_log(self, lines: list[dict], *, user_id: str, period: str) -> bool:
        copies = [UpdateOne({"_id": line["_id"]},
                            {"$setOnInsert": {**_without_id(line), "user_id": user_id, "period": period}}, upsert=True)
                  for line in lines]
        try:
            self._log.bulk_write(copies, ordered=False)
        except BulkWriteError as error:
            # A concurrent archive inserted some of them first: they are there all the same.
            if any(failure["code"] != _DUPLICATE_KEY for failure in error.details.get("writeErrors", [])):
                raise
        return True

    def _drop_from_journal(self, document_id: str, reservation_ids: list[str]) -> None:
        self._usage.update_one({"_id": document_id}, {"$pull": {"journal": {"_id": {"$in": reservation_ids}}}})

    @unavailable_when_unreachable
    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage:
        document = self._usage.find_one({"_id": _document_id(user_id, period)}, {"journal": 0}) or {}
        return PeriodUsage(
            period=period,
            tokens_used=document.get("tokens_used", 0),
            tokens_reserved=sum(r["tokens"] for r in document.get("reservations", []) if r["expires_at"] > now),
            requests=document.get("requests", 0),
            by_model={e["key"]: Tally(e["tokens"], e["requests"]) for e in document.get("by_model", [])},
            by_day={e["key"]: Tally(e["tokens"], e["requests"]) for e in document.get("by_day", [])},
        )

    @unavailable_when_unreachable
    def statement(self, user_id: str, period: str) -> LedgerStatement:
        # The month's document first: every line numbered up to its `entries` is then either
        # in its journal or, copied before it left the journal, in request_log.
        document = self._usage.find_one({"_id": _document_id(user_id, period)},
                                        {"tokens_used": 1, "entries": 1, "journal": 1}) or {}
        lines = {line["_id"]: line for line in self._log.find({
            "user_id": user_id, "period": period,
            # Lines logged before lines were numbered have no `seq`.
            "$or": [{"seq": {"$lte": document.get("entries", 0)}}, {"seq": {"$exists": False}}],
        })}
        for line in document.get("journal") or []:
            lines.setdefault(line["_id"], line)
        logged = sorted((_logged_request(line) for line in lines.values()), key=lambda entry: entry.seq)
        return LedgerStatement(tokens_used=document.get("tokens_used", 0), log=tuple(logged))


def _recording(reservation: Reservation, outcome: RequestOutcome, quota: int | None) -> list[dict]:
    """The update that records `outcome`: charged (within `quota`) if it succeeded, else logged only."""
    at, rid = outcome.at, reservation.reservation_id
    succeeded = outcome.status == "ok" and quota is not None
    # Charge the real count, but never past the quota: what does not fit is logged as
    # unbilled (only possible if the model used more than was reserved).
    charge: Any = {"$max": [0, {"$min": [outcome.total_tokens, _room(quota, at, excluding=rid)]}]} if succeeded else 0
    changes: dict[str, Any] = {
        "tokens_used": {"$add": [_USED, "$_charge"]},
        "requests": {"$add": [_REQUESTS, 1 if succeeded else 0]},
        "entries": "$_seq",
        "reservations": _holds(at, excluding=rid),
        "journal": {"$concatArrays": [{"$ifNull": ["$journal", []]}, [_log_line(reservation, outcome, succeeded)]]},
        "updated_at": at,
    }
    if succeeded:
        changes["by_model"] = _tally("by_model", outcome.model, "$_charge")
        changes["by_day"] = _tally("by_day", day_of(at), "$_charge")
    return [
        {"$set": {"_charge": charge, "_seq": {"$add": [{"$ifNull": ["$entries", 0]}, 1]}}},
        {"$set": changes},
        {"$unset": ["_charge", "_seq"]},
    ]


def _log_line(reservation: Reservation, outcome: RequestOutcome, succeeded: bool) -> dict:
    """One request in the log, as an expression: `total_tokens` is what was charged, so the log
    sums to the counter. Values are literals, so no text can be read as a field path."""
    fixed = {
        "request_id": outcome.request_id,
        "key_id": outcome.key_id,
        "day": day_of(outcome.at),
        "model": outcome.model,
        "status": outcome.status,
        "prompt_tokens": outcome.prompt_tokens if succeeded else 0,
        "completion_tokens": outcome.completion_tokens if succeeded else 0,
        "reserved_tokens": reservation.tokens,
        "latency_ms": outcome.latency_ms,
        "created_at": outcome.at,
    }
    if outcome.detail:
        fixed["detail"] = outcome.detail[:500]
    line: dict[str, Any] = {"_id": {"$literal": reservation.reservation_id}, "seq": "$_seq", "total_tokens": "$_charge"}
    line.update({name: {"$literal": value} for name, value in fixed.items()})
    if succeeded:
        line["unbilled_tokens"] = {"$subtract": [outcome.total_tokens, "$_charge"]}
    return line


def _without_id(line: dict) -> dict:
    return {name: value for name, value in line.items() if name != "_id"}


def _logged_request(line: dict) -> LoggedRequest:
    return LoggedRequest(
        reservation_id=line["_id"],
        seq=line.get("seq", 0),
        request_id=line["request_id"],
        key_id=line["key_id"],
        model=line["model"],
        status=line["status"],
        prompt_tokens=line["prompt_tokens"],
        completion_tokens=line["completion_tokens"],
        charged=line["total_tokens"],
        at=line["created_at"],
    )
