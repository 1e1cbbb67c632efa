"""Monthly token accounting in MongoDB.

One document per user per month holds the tokens charged, the request count
and the reservations in flight:

  {_id: "<user_id>:<YYYY-MM>", tokens_used, requests,
   reservations: [{id, tokens, expires_at}, ...]}

Reserving is a single guarded update: it counts only unexpired reservations,
adds the new one only if used + held + new fits the quota, and drops expired
ones as it goes, so an abandoned reservation frees itself with no job to run.
Settling charges the real count and appends the request log entry in one
transaction, so the counter always equals the sum of the log.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.domain.periods import day_of
from infergate.domain.ports import PeriodUsage, Reservation, RequestOutcome
from infergate.stores.mongo import REQUEST_LOG, USAGE, unavailable_when_unreachable


def _document_id(user_id: str, period: str) -> str:
    return f"{user_id}:{period}"


def _active_reservations(now: datetime, *, excluding: str | None = None) -> dict:
    condition: dict = {"$gt": ["$$r.expires_at", now]}
    if excluding is not None:
        condition = {"$and": [condition, {"$ne": ["$$r.id", excluding]}]}
    return {"$filter": {"input": {"$ifNull": ["$reservations", []]}, "as": "r", "cond": condition}}


def _held_tokens(now: datetime) -> dict:
    return {"$sum": {"$map": {"input": _active_reservations(now), "as": "r", "in": "$$r.tokens"}}}


_USED = {"$ifNull": ["$tokens_used", 0]}
_REQUESTS = {"$ifNull": ["$requests", 0]}


class MongoUsageLedger:
    def __init__(self, database: Database) -> None:
        self._client = database.client
        self._usage = database[USAGE]
        self._log = database[REQUEST_LOG]

    @unavailable_when_unreachable
    def reserve(self, reservation: Reservation, *, quota: int, now: datetime) -> bool:
        if reservation.tokens > quota:
            return False
        fits = {"$lte": [{"$add": [_USED, _held_tokens(now), reservation.tokens]}, quota]}
        hold = {"id": reservation.reservation_id, "tokens": reservation.tokens, "expires_at": reservation.expires_at}
        update = [{"$set": {
            "user_id": reservation.user_id,
            "period": reservation.period,
            "tokens_used": _USED,
            "requests": _REQUESTS,
            "reservations": {"$concatArrays": [_active_reservations(now), [hold]]},
            "updated_at": now,
        }}]
        # The upsert creates the month's document on first use. When the document
        # exists but the guard fails, the upsert collides with it (DuplicateKeyError):
        # that means "does not fit" — unless a concurrent request created the
        # document a moment ago, which the second attempt tells apart.
        for _ in range(2):
            try:
                self._usage.update_one(
                    {"_id": _document_id(reservation.user_id, reservation.period), "$expr": fits}, update, upsert=True
                )
                return True
            except DuplicateKeyError:
                continue
        return False

    @unavailable_when_unreachable
    def settle(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        self._close(reservation, outcome, charged=True)

    @unavailable_when_unreachable
    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        self._close(reservation, outcome, charged=False)

    def _close(self, reservation: Reservation, outcome: RequestOutcome, *, charged: bool) -> None:
        """Drop the reservation, charge the outcome (or nothing) and log the request, atomically."""
        charge = outcome.total_tokens if charged else 0
        update = [{"$set": {
            "tokens_used": {"$add": [_USED, charge]},
            "requests": {"$add": [_REQUESTS, 1 if charged else 0]},
            "reservations": _active_reservations(outcome.at, excluding=reservation.reservation_id),
            "updated_at": outcome.at,
        }}]
        entry = {
            "_id": reservation.reservation_id,
            "request_id": outcome.request_id,
            "user_id": outcome.user_id,
            "key_id": outcome.key_id,
            "period": reservation.period,
            "day": day_of(outcome.at),
            "model": outcome.model,
            "status": outcome.status,
            "prompt_tokens": outcome.prompt_tokens if charged else 0,
            "completion_tokens": outcome.completion_tokens if charged else 0,
            "total_tokens": charge,
            "reserved_tokens": reservation.tokens,
            "latency_ms": outcome.latency_ms,
            "created_at": outcome.at,
        }

        def write(session) -> None:
            self._usage.update_one(
                {"_id": _document_id(reservation.user_id, reservation.period)}, update, session=session
            )
            self._log.insert_one(entry, session=session)

        with self._client.start_session() as session:
            session.with_transaction(write)

    @unavailable_when_unreachable
    def usage(self, user_id: str, period: str, *, now: datetime) -> PeriodUsage:
        document = self._usage.find_one({"_id": _document_id(user_id, period)})
        if document is None:
            return PeriodUsage(period=period, tokens_used=0, tokens_reserved=0, requests=0)
        held = sum(r["tokens"] for r in document.get("reservations", []) if r["expires_at"] > now)
        return PeriodUsage(
            period=period,
            tokens_used=document.get("tokens_used", 0),
            tokens_reserved=held,
            requests=document.get("requests", 0),
        )
