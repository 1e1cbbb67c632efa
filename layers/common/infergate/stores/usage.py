"""Monthly token accounting in MongoDB.

One document per user per month holds what was charged, the reservations in
flight, and the month's breakdown by model and by day:

  {_id: "<user_id>:<YYYY-MM>", tokens_used, requests,
   reservations: [{id, tokens, expires_at}, ...],
   by_model: [{key, tokens, requests}, ...], by_day: [{key, tokens, requests}, ...]}

Reserving is a single guarded update (two more round trips create the
document on a month's first request): counting only unexpired reservations,
it holds as much of the request's worst case as remains (never less than
the minimum the request needs), and drops expired holds as it goes, so an
abandoned reservation frees itself with no job to run. Settling charges the
real count, never past the quota, and appends the request log entry in the
same transaction, so the counter always equals the sum of the log.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.domain.periods import day_of
from infergate.domain.ports import PeriodUsage, RequestOutcome, Reservation, Tally
from infergate.stores.mongo import REQUEST_LOG, USAGE, unavailable_when_unreachable

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
    def __init__(self, database: Database) -> None:
        self._client = database.client
        self._usage = database[USAGE]
        self._log = database[REQUEST_LOG]

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
            # Either it does not fit, or this is the month's first request. The guarded
            # update does not upsert: an upsert that loses a race cannot tell "did not
            # fit" from "applied" on every server, so the month's document is created
            # on its own, idempotently, and the guarded update tried once more.
            try:
                self._usage.update_one({"_id": document_id}, {"$setOnInsert": {
                    "user_id": reservation.user_id, "period": reservation.period,
                    "tokens_used": 0, "requests": 0, "reservations": [], "created_at": now,
                }}, upsert=True)
            except DuplicateKeyError:
                pass  # created a moment ago by a concurrent request
            document = self._usage.find_one_and_update(
                guard, update, return_document=ReturnDocument.AFTER, projection={"reservations": 1}
            )
        if document is None:
            return None
        held = next(r for r in document["reservations"] if r["id"] == reservation.reservation_id)
        return replace(reservation, tokens=held["tokens"])

    @unavailable_when_unreachable
    def settle(self, reservation: Reservation, outcome: RequestOutcome, *, quota: int) -> int:
        at, rid = outcome.at, reservation.reservation_id
        # Charge the real count, but never past the quota: what does not fit is
        # logged as unbilled (only possible if the model used more than was reserved).
        charge = {"$max": [0, {"$min": [outcome.total_tokens, _room(quota, at, excluding=rid)]}]}
        update = [
            {"$set": {"_charge": charge}},
            {"$set": {
                "tokens_used": {"$add": [_USED, "$_charge"]},
                "requests": {"$add": [_REQUESTS, 1]},
                "reservations": _holds(at, excluding=rid),
                "by_model": _tally("by_model", outcome.model, "$_charge"),
                "by_day": _tally("by_day", day_of(at), "$_charge"),
                "updated_at": at,
            }},
            {"$unset": "_charge"},
        ]
        charged = 0

        def write(session) -> None:
            nonlocal charged
            before = self._usage.find_one_and_update(
                {"_id": _document_id(reservation.user_id, reservation.period)}, update,
                return_document=ReturnDocument.BEFORE, session=session,
            ) or {}
            used = before.get("tokens_used", 0)
            held = sum(r["tokens"] for r in before.get("reservations", []) if r["expires_at"] > at and r["id"] != rid)
            charged = max(0, min(outcome.total_tokens, quota - used - held))
            self._log.insert_one(_log_entry(reservation, outcome, charged), session=session)

        with self._client.start_session() as session:
            session.with_transaction(write)
        return charged

    @unavailable_when_unreachable
    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        update = [{"$set": {"reservations": _holds(outcome.at, excluding=reservation.reservation_id), "updated_at": outcome.at}}]

        def write(session) -> None:
            self._usage.update_one({"_id": _document_id(reservation.user_id, reservation.period)}, update, session=session)
            self._log.insert_one(_log_entry(reservation, outcome, 0), session=session)

        with self._client.start_session() as session:
            session.with_transaction(write)

    @unavailable_when_unreachable
    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage:
        document = self._usage.find_one({"_id": _document_id(user_id, period)}) or {}
        return PeriodUsage(
            period=period,
            tokens_used=document.get("tokens_used", 0),
            tokens_reserved=sum(r["tokens"] for r in document.get("reservations", []) if r["expires_at"] > now),
            requests=document.get("requests", 0),
            by_model={e["key"]: Tally(e["tokens"], e["requests"]) for e in document.get("by_model", [])},
            by_day={e["key"]: Tally(e["tokens"], e["requests"]) for e in document.get("by_day", [])},
        )


def _log_entry(reservation: Reservation, outcome: RequestOutcome, charged: int) -> dict:
    """One request in the log. `total_tokens` is what was charged: the log sums to the counter."""
    succeeded = outcome.status == "ok"
    entry = {
        "_id": reservation.reservation_id,
        "request_id": outcome.request_id,
        "user_id": outcome.user_id,
        "key_id": outcome.key_id,
        "period": reservation.period,
        "day": day_of(outcome.at),
        "model": outcome.model,
        "status": outcome.status,
        "prompt_tokens": outcome.prompt_tokens if succeeded else 0,
        "completion_tokens": outcome.completion_tokens if succeeded else 0,
        "total_tokens": charged,
        "reserved_tokens": reservation.tokens,
        "latency_ms": outcome.latency_ms,
        "created_at": outcome.at,
    }
    if succeeded and charged < outcome.total_tokens:
        entry["unbilled_tokens"] = outcome.total_tokens - charged
    if outcome.detail:
        entry["detail"] = outcome.detail[:500]
    return entry
