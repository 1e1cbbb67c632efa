"""How a user's month is kept in MongoDB: its document's fields, the holds it counts, the
lines of its request log, and the readings made of them (stores/usage.py writes them).

  {_id: "<user_id>:<YYYY-MM>", user_id, period,
   tokens_used, committed,                  committed = tokens_used + every hold listed below
   cost_micros,                             what tokens_used cost (domain/prices.py)
   requests, entries,                       requests that succeeded; log lines written
   reservations: [{id, tokens, expires_at}, ...],
   models: {<model>: {tokens, requests, cost_micros}}, days: {<YYYY-MM-DD>: {...the same}},
   keys: {<key_id>: {...the same}},
   journal: [<request log line>, ...]}      the newest lines of the request log
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from infergate.domain.ledger import LoggedRequest, RequestOutcome, Reservation, Tally
from infergate.domain.periods import day_of


def month_id(user_id: str, period: str) -> str:
    return f"{user_id}:{period}"


def fieldmodel_name(name: str) -> str:
    """`name` as a field name: a model's name may hold dots, which MongoDB reads as a path."""
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def model_name(field: str) -> str:
    return field.replace("%2E", ".").replace("%24", "$").replace("%25", "%")


def unexpired(now: datetime) -> dict:
    return {"$filter": {"input": {"$ifNull": ["$reservations", []]}, "as": "r", "cond": {"$gt": ["$$r.expires_at", now]}}}


def sum_of_tokens(holds: str) -> dict:
    return {"$sum": {"$map": {"input": holds, "as": "r", "in": "$$r.tokens"}}}


def breakdown_pipeline(period: str, by: str) -> list[dict]:
    """A month's shares by team (its level documents), user (their months), key or model (the
    tallies in the users' months), the heaviest first."""
    totals = {"tokens": {"$sum": "$tokens"}, "requests": {"$sum": "$requests"}, "cost": {"$sum": "$cost"}}
    if by in ("team", "user"):
        match = {"period": period, "level": "team"} if by == "team" else {"period": period, "user_id": {"$exists": True}}
        owner = "$level_id" if by == "team" else "$user_id"
        return [{"$match": match},
                {"$project": {"owner": owner, "tokens": "$tokens_used", "requests": 1,
                              "cost": {"$ifNull": ["$cost_micros", 0]}}},
                {"$group": {"_id": "$owner", **totals}}, {"$sort": {"tokens": -1, "_id": 1}}]
    field = "$models" if by == "model" else "$keys"
    return [{"$match": {"period": period, "user_id": {"$exists": True}}},
            {"$project": {"tally": {"$objectToArray": {"$ifNull": [field, {}]}}}},
            {"$unwind": "$tally"},
            {"$project": {"owner": "$tally.k", "tokens": "$tally.v.tokens", "requests": "$tally.v.requests",
                          "cost": {"$ifNull": ["$tally.v.cost_micros", 0]}}},
            {"$group": {"_id": "$owner", **totals}}, {"$sort": {"tokens": -1, "_id": 1}}]


def resized(reservation_id: str, size: tuple[int, int] | None) -> list[dict]:
    """An update (a pipeline) that makes a request's hold `size` (tokens, micros), or drops it
    (None), keeping `committed` and `committed_micros` the sum of the charges and the holds."""
    mine = {"$eq": ["$$r.id", reservation_id]}
    old = {"$arrayElemAt": [{"$filter": {"input": "$reservations", "as": "r", "cond": mine}}, 0]}
    tokens, micros = size or (0, 0)
    if size is None:
        holds = {"$filter": {"input": "$reservations", "as": "r", "cond": {"$ne": ["$$r.id", reservation_id]}}}
    else:
        holds = {"$map": {"input": "$reservations", "as": "r", "in": {
            "$cond": [mine, {"$mergeObjects": ["$$r", {"tokens": tokens, "micros": micros}]}, "$$r"]}}}
    return [
        {"$set": {"_old": old}},
        {"$set": {"committed": {"$add": ["$committed", tokens, {"$multiply": [-1, "$_old.tokens"]}]},
                  "committed_micros": {"$add": [{"$ifNull": ["$committed_micros", 0]}, micros,
                                                {"$multiply": [-1, {"$ifNull": ["$_old.micros", 0]}]}]},
                  "reservations": holds}},
        {"$unset": "_old"},
    ]


def counts(reservation: Reservation, outcome: RequestOutcome, charge: int) -> dict[str, int]:
    """What recording `outcome` adds to the month's counters and tallies."""
    counts = {"entries": 1}
    if outcome.counted(charge):
        cost = outcome.cost_micros(charge, held=reservation.micros)
        counts |= {"tokens_used": charge, "requests": 1, "cost_micros": cost}
        for tally in (f"models.{fieldmodel_name(outcome.model)}", f"days.{day_of(outcome.at)}",
                      f"keys.{fieldmodel_name(outcome.key_id)}"):
            counts |= {f"{tally}.tokens": charge, f"{tally}.requests": 1, f"{tally}.cost_micros": cost}
    return counts


def log_line(reservation: Reservation, outcome: RequestOutcome, charge: int) -> dict:
    """One request in the log. `total_tokens` is what was charged: the log sums to the counter."""
    counted = outcome.counted(charge)
    line: dict[str, Any] = {
        "_id": reservation.reservation_id,
        "request_id": outcome.request_id,
        "key_id": outcome.key_id,
        "day": day_of(outcome.at),
        "model": outcome.model,
        "status": outcome.status,
        "prompt_tokens": outcome.prompt_tokens if counted else 0,
        "completion_tokens": outcome.completion_tokens if counted else 0,
        "total_tokens": charge,
        "cost_micros": outcome.cost_micros(charge, held=reservation.micros),
        "reserved_tokens": reservation.tokens,
        "latency_ms": outcome.latency_ms,
        "created_at": outcome.at,
    }
    if counted and charge < outcome.total_tokens:
        line["unbilled_tokens"] = outcome.total_tokens - charge
    if outcome.detail:
        line["detail"] = outcome.detail[:500]
    if outcome.end_user:
        line["user"] = outcome.end_user
    if outcome.servers:
        line["server"] = outcome.server
        if len(outcome.servers) > 1:
            line["servers_tried"] = list(outcome.servers)
    return line


def numbered(document: dict) -> list[dict]:
    """The journal's lines with their numbers: the journal is the tail of the month's log."""
    journal = document.get("journal") or []
    first = document.get("entries", 0) - len(journal) + 1
    return [{**line, "seq": first + index} for index, line in enumerate(journal)]


def tallies(document: dict, field: str, *, legacy: str, decode=lambda key: key) -> dict[str, Tally]:
    """Tallies by key; months recorded before tallies were maps keep theirs in a list."""
    tallies = {decode(key): Tally(value.get("tokens", 0), value.get("requests", 0), value.get("cost_micros", 0))
               for key, value in (document.get(field) or {}).items()}
    for entry in document.get(legacy) or []:
        earlier = tallies.get(entry["key"], Tally(0, 0))
        tallies[entry["key"]] = Tally(earlier.tokens + entry["tokens"], earlier.requests + entry["requests"],
                                      earlier.cost_micros)
    return tallies


def logged_request(line: dict) -> LoggedRequest:
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
        cost_micros=line.get("cost_micros", 0),
    )
