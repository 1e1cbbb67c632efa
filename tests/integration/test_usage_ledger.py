"""Monthly accounting in a real MongoDB: reservations, settlement, the request log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from infergate.domain.ports import Reservation, RequestOutcome
from infergate.stores.usage import MongoUsageLedger

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def reservation(rid: str, tokens: int, *, now: datetime = NOW, user: str = "usr_1") -> Reservation:
    return Reservation(rid, user, "2026-11", tokens, now + timedelta(minutes=2))


def outcome(prompt: int, completion: int, *, status: str = "ok", at: datetime = NOW) -> RequestOutcome:
    return RequestOutcome("req", "usr_1", "key_1", "smollm2:135m", status, prompt, completion, 5, at)


def log_sum(database, user: str = "usr_1") -> int:
    return sum(entry["total_tokens"] for entry in database.request_log.find({"user_id": user, "period": "2026-11"}))


def test_settling_charges_the_real_count_and_logs_it(database):
    ledger = MongoUsageLedger(database)
    held = reservation("r1", 500)
    assert ledger.reserve(held, quota=1000, now=NOW)
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 500

    ledger.settle(held, outcome(20, 30))
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (50, 0, 1)
    entry = database.request_log.find_one({"_id": "r1"})
    assert (entry["prompt_tokens"], entry["completion_tokens"], entry["total_tokens"], entry["status"]) == (20, 30, 50, "ok")
    assert log_sum(database) == 50


def test_a_released_reservation_costs_nothing_but_is_logged(database):
    ledger = MongoUsageLedger(database)
    held = reservation("r1", 500)
    ledger.reserve(held, quota=1000, now=NOW)
    ledger.release(held, outcome(0, 0, status="upstream_error"))
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (0, 0, 0)
    assert database.request_log.find_one({"_id": "r1"})["status"] == "upstream_error"


def test_reservations_that_do_not_fit_are_refused(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(reservation("r1", 600), quota=1000, now=NOW)
    assert not ledger.reserve(reservation("r2", 500), quota=1000, now=NOW)
    assert ledger.reserve(reservation("r3", 400), quota=1000, now=NOW)
    assert not ledger.reserve(reservation("r4", 1), quota=1000, now=NOW)
    assert not ledger.reserve(reservation("r5", 1001), quota=1000, now=NOW)


def test_an_abandoned_reservation_frees_itself_when_it_expires(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(reservation("crashed", 900), quota=1000, now=NOW)
    assert not ledger.reserve(reservation("r2", 500), quota=1000, now=NOW)
    later = NOW + timedelta(minutes=3)
    assert ledger.usage("usr_1", "2026-11", now=later).tokens_reserved == 0
    assert ledger.reserve(reservation("r2", 500, now=later), quota=1000, now=later)
    # The expired hold is gone from the document, not merely ignored.
    holds = database.usage.find_one({"_id": "usr_1:2026-11"})["reservations"]
    assert [h["id"] for h in holds] == ["r2"]


def test_concurrent_reservations_never_hold_more_than_the_quota(database):
    ledger = MongoUsageLedger(database)
    admitted: list[str] = []
    lock = threading.Lock()

    def attempt(index: int) -> None:
        if ledger.reserve(reservation(f"r{index}", 100), quota=1000, now=NOW):
            with lock:
                admitted.append(f"r{index}")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 1000


def test_users_and_months_are_accounted_apart(database):
    ledger = MongoUsageLedger(database)
    assert ledger.reserve(reservation("a", 1000, user="usr_a"), quota=1000, now=NOW)
    assert ledger.reserve(reservation("b", 1000, user="usr_b"), quota=1000, now=NOW)
    assert ledger.usage("usr_a", "2026-12", now=NOW).tokens_reserved == 0
