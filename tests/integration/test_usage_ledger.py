"""Monthly accounting in a real MongoDB: reservations, settlement, the request log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from infergate.domain.ports import RequestOutcome, Reservation
from infergate.stores.usage import MongoUsageLedger

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def wanted(rid: str, tokens: int, *, now: datetime = NOW, user: str = "usr_1", period: str = "2026-11") -> Reservation:
    return Reservation(rid, user, period, tokens, now + timedelta(minutes=2))


def outcome(prompt: int, completion: int, *, status: str = "ok", at: datetime = NOW, model: str = "smollm2:135m") -> RequestOutcome:
    return RequestOutcome("req", "usr_1", "key_1", model, status, prompt, completion, 5, at)


def log_sum(database, user: str = "usr_1", period: str = "2026-11") -> int:
    return sum(entry["total_tokens"] for entry in database.request_log.find({"user_id": user, "period": period}))


def test_settling_charges_the_real_count_and_logs_it(database):
    ledger = MongoUsageLedger(database)
    held = ledger.reserve(wanted("r1", 500), minimum=10, quota=1000, now=NOW)
    assert held.tokens == 500
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 500

    assert ledger.settle(held, outcome(20, 30), quota=1000) == 50
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (50, 0, 1)
    entry = database.request_log.find_one({"_id": "r1"})
    assert (entry["prompt_tokens"], entry["completion_tokens"], entry["total_tokens"], entry["status"]) == (20, 30, 50, "ok")
    assert log_sum(database) == 50


def test_a_released_reservation_costs_nothing_but_is_logged(database):
    ledger = MongoUsageLedger(database)
    held = ledger.reserve(wanted("r1", 500), minimum=10, quota=1000, now=NOW)
    ledger.release(held, outcome(0, 0, status="upstream_error"))
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (0, 0, 0)
    assert database.request_log.find_one({"_id": "r1"})["status"] == "upstream_error"


def test_a_reservation_is_capped_to_what_remains_and_refused_below_its_minimum(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(wanted("r1", 600), minimum=10, quota=1000, now=NOW).tokens == 600
    assert ledger.reserve(wanted("r2", 1000), minimum=10, quota=1000, now=NOW).tokens == 400
    assert ledger.reserve(wanted("r3", 5), minimum=1, quota=1000, now=NOW) is None
    assert ledger.reserve(wanted("r4", 2000), minimum=1001, quota=1000, now=NOW) is None
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 1000


def test_a_new_months_first_reservation_is_capped_by_the_quota(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(wanted("r1", 5000), minimum=10, quota=1000, now=NOW).tokens == 1000


def test_settling_never_charges_past_the_quota(database):
    ledger = MongoUsageLedger(database)
    other = ledger.reserve(wanted("other", 900), minimum=1, quota=1000, now=NOW)
    mine = ledger.reserve(wanted("mine", 100), minimum=1, quota=1000, now=NOW)
    # The model used more than was reserved for it: only what fits is charged.
    assert ledger.settle(mine, outcome(80, 70), quota=1000) == 100
    assert database.request_log.find_one({"_id": "mine"})["unbilled_tokens"] == 50
    assert ledger.settle(other, outcome(400, 500), quota=1000) == 900
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_used == 1000 == log_sum(database)


def test_an_abandoned_reservation_frees_itself_when_it_expires(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(wanted("crashed", 900), minimum=900, quota=1000, now=NOW)
    assert ledger.reserve(wanted("r2", 500), minimum=500, quota=1000, now=NOW) is None
    later = NOW + timedelta(minutes=3)
    assert ledger.usage("usr_1", "2026-11", now=later).tokens_reserved == 0
    assert ledger.reserve(wanted("r2", 500, now=later), minimum=500, quota=1000, now=later)
    # The expired hold is gone from the document, not merely ignored.
    holds = database.usage.find_one({"_id": "usr_1:2026-11"})["reservations"]
    assert [h["id"] for h in holds] == ["r2"]


def test_usage_is_broken_down_by_model_and_by_day(database):
    ledger = MongoUsageLedger(database)
    day_two = NOW + timedelta(days=1)
    for rid, model, at, tokens in [("a", "m1", NOW, 10), ("b", "m2", NOW, 20), ("c", "m1", day_two, 30)]:
        held = ledger.reserve(wanted(rid, 100, now=at), minimum=1, quota=1000, now=at)
        ledger.settle(held, outcome(tokens, 0, at=at, model=model), quota=1000)
    usage = ledger.usage("usr_1", "2026-11", now=day_two)
    assert {m: (t.tokens, t.requests) for m, t in usage.by_model.items()} == {"m1": (40, 2), "m2": (20, 1)}
    assert {d: (t.tokens, t.requests) for d, t in usage.by_day.items()} == {"2026-11-28": (30, 2), "2026-11-29": (30, 1)}


def race_for_a_new_month(ledger: MongoUsageLedger, user: str, requests: int = 30) -> list[int]:
    """`requests` reservations of 100 racing to be a month's first; the tokens each was granted."""
    granted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(requests)

    def attempt(index: int) -> None:
        barrier.wait()
        held = ledger.reserve(wanted(f"{user}-r{index}", 100, user=user), minimum=60, quota=1000, now=NOW)
        if held:
            with lock:
                granted.append(held.tokens)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return granted


def test_concurrent_reservations_never_hold_more_than_the_quota_nor_leave_orphans(database):
    """For 10 users, 30 requests race for the month's first reservation: each user's holds fit
    the quota, and every hold in the document belongs to a request that was told it got one."""
    ledger = MongoUsageLedger(database)
    for user in (f"usr_{n}" for n in range(10)):
        granted = race_for_a_new_month(ledger, user)
        assert sum(granted) <= 1000 and len(granted) == 10, user
        assert ledger.usage(user, "2026-11", now=NOW).tokens_reserved == sum(granted), user


def test_users_and_months_are_accounted_apart(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(wanted("a", 1000, user="usr_a"), minimum=1, quota=1000, now=NOW)
    assert ledger.reserve(wanted("b", 1000, user="usr_b"), minimum=1, quota=1000, now=NOW)
    assert ledger.reserve(wanted("c", 1000, user="usr_a", period="2026-12"), minimum=1, quota=1000, now=NOW)
    assert ledger.usage("usr_a", "2027-01", now=NOW).tokens_reserved == 0
