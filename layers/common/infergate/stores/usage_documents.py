"""How a user's month is kept in MongoDB: its document's fields, the holds it counts, the
lines of its request log, and the readings made of them (stores/usage.py writes them).

  {_id: "<user_id>:<YYYY-MM>", user_id, period,
   tokens_used, committed,                  committed = tokens_used + every hold listed below
   cost_micros,                             what tokens_used cost (domain/prices.py)
   requests, entries,                       requests that succeeded; log lines written
   reservations: [{id, tokens, expires_at}, ...],
   models: {<model>: {tokens, requests, cost_micros}}, keys: {<key_id>: {...the same}},
   days: {<YYYY-MM-DD>: {...the same, models: {...}, keys: {...}}},   a day's, and its own by model and key
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


# Shares summed by owner, the heaviest first.
_GROUPED = ({"$group": {"_id": "$owner", "tokens": {"$sum": "$tokens"}, "requests": {"$sum": "$requests"},
                        "cost": {"$sum": "$cost"}}},
            {"$sort": {"tokens": -1, "_id": 1}})


def breakdown_pipeline(period: str, by: str) -> list[dict]:
    """A month's shares by team (its level documents), user (their months), key or model (the
    tallies in the users' months), the heaviest first."""
    if by in ("team", "user"):
        match = {"period": period, "level": "team"} if by == "team" else {"period": period, "user_id": {"$exists": True}}
        owner = "$level_id" if by == "team" else "$user_id"
        return [{"$match": match},
                {"$project": {"owner": owner, "tokens": "$tokens_used", "requests": 1,
                              "cost": {"$ifNull": ["$cost_micros", 0]}}}, *_GROUPED]
    field = "$models" if by == "model" else "$keys"
    return [{"$match": {"period": period, "user_id": {"$exists": True}}},
            {"$project": {"tally": {"$objectToArray": {"$ifNull": [field, {}]}}}},
            {"$unwind": "$tally"}, _share("$tally.k", "$tally.v"), *_GROUPED]


def days_breakdown_pipeline(periods: list[str], first: str, last: str, by: str) -> list[dict]:
    """Days `first` to `last` (YYYY-MM-DD, within the months `periods`) by team (its level
    documents' days), user (their months' days), key or model (each day's own tallies of them),
    the heaviest first."""
    whose = {"level": "team"} if by == "team" else {"user_id": {"$exists": True}}
    owner = "$level_id" if by == "team" else "$user_id"
    days = [{"$match": {"period": {"$in": periods}, **whose}},
            {"$project": {"owner": owner, "day": {"$objectToArray": {"$ifNull": ["$days", {}]}}}},
            {"$unwind": "$day"},
            {"$match": {"day.k": {"$gte": first, "$lte": last}}}]
    if by in ("team", "user"):
        shares = [_share("$owner", "$day.v")]
    else:
        tallies = "$day.v.models" if by == "model" else "$day.v.keys"
        shares = [{"$project": {"tally": {"$objectToArray": {"$ifNull": [tallies, {}]}}}}, {"$unwind": "$tally"},
                  _share("$tally.k", "$tally.v")]
    return [*days, *shares, *_GROUPED]


def _share(owner: str, tally: str) -> dict:
    """A stage that makes a tally (`tally`: its path) its owner's share."""
    return {"$project": {"owner": owner, "tokens": f"{tally}.tokens", "requests": f"{tally}.requests",
                         "cost": {"$ifNull": [f"{tally}.cost_micros", 0]}}}


def resized(reservation_id: str, size: tuple[int, int] | None) -> list[dict]:
    """An update (a pipeline) that makes a request's hold `size` (tokens, micros), or drops it
    (None), keeping `committed` and `committed_micros` the sum of the charges and the holds. It
    advances the month's `version`, as every write to a level's month does: a request that read
    the month before it (stores/levels.py) must not write back the hold as it was."""
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
                  "reservations": holds, "version": {"$add": [{"$ifNull": ["$version", 0]}, 1]}}},
        {"$unset": "_old"},
    ]


def counts(reservation: Reservation, outcome: RequestOutcome, charge: int) -> dict[str, int]:
    """What recording `outcome` adds to the month's counters and tallies."""
    counts = {"entries": 1}
    if outcome.counted(charge):
        cost = outcome.cost_micros(charge, held=reservation.micros)
        counts |= {"tokens_used": charge, "requests": 1, "cost_micros": cost}
        model, key, day = fieldmodel_name(outcome.model), fieldmodel_name(outcome.key_id), f"days.{day_of(outcome.at)}"
        for tally in (f"models.{model}", f"keys.{key}", day, f"{day}.models.{model}", f"{day}.keys.{key}"):
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
