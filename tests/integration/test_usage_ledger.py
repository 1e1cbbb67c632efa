"""Monthly accounting in a real MongoDB, beyond the ledger's contract (test_ledger_contract.py):
what the month's document holds, its journal and archive, months written by earlier versions,
and replies lost on the wire."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import AutoReconnect

from infergate.domain.ledger import RequestOutcome, Reservation
from infergate.stores.usage import MongoUsageLedger

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def wanted(rid: str, tokens: int, *, now: datetime = NOW, user: str = "usr_1", period: str = "2026-11") -> Reservation:
    return Reservation(rid, user, period, tokens, now + timedelta(minutes=2))


def outcome(prompt: int, completion: int, *, status: str = "ok", at: datetime = NOW, model: str = "smollm2:135m") -> RequestOutcome:
    return RequestOutcome("req", "usr_1", "key_1", model, status, prompt, completion, 5, at)


def log_sum(database, user: str = "usr_1", period: str = "2026-11") -> int:
    return sum(line.charged for line in MongoUsageLedger(database).statement(user, period).log)


def line(database, reservation_id: str, user: str = "usr_1", period: str = "2026-11"):
    return next(line for line in MongoUsageLedger(database).statement(user, period).log if line.reservation_id == reservation_id)


def journal_line(database, reservation_id: str) -> dict:
    return next(entry for entry in database.usage.find_one({"_id": "usr_1:2026-11"})["journal"] if entry["_id"] == reservation_id)


def test_settling_never_charges_past_the_quota(database):
    ledger = MongoUsageLedger(database)
    other = ledger.reserve(wanted("other", 900), minimum=1, quota=1000, now=NOW)
    mine = ledger.reserve(wanted("mine", 100), minimum=1, quota=1000, now=NOW)
    # The model used more than was reserved for it: only what fits is charged.
    assert ledger.settle(mine, outcome(80, 70), quota=1000) == 100
    assert journal_line(database, "mine")["unbilled_tokens"] == 50
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


def test_text_that_looks_like_a_field_path_is_logged_as_it_is(database):
    ledger = MongoUsageLedger(database)
    held = ledger.reserve(wanted("r1", 100), minimum=1, quota=1000, now=NOW)
    ledger.release(held, RequestOutcome("$request_id", "usr_1", "key_1", "$model", "upstream_error", 0, 0, 5, NOW,
                                        detail="$tokens_used"))
    logged = journal_line(database, "r1")
    assert (logged["request_id"], logged["model"], logged["detail"]) == ("$request_id", "$model", "$tokens_used")


def settle_many(ledger: MongoUsageLedger, count: int, *, user: str = "usr_1", prefix: str = "r") -> None:
    for index in range(count):
        held = ledger.reserve(wanted(f"{prefix}{index}", 100, user=user), minimum=1, quota=1_000_000, now=NOW)
        ledger.settle(held, outcome(index % 7, 3), quota=1_000_000)


def test_every_few_lines_the_journal_moves_to_the_request_log(database):
    ledger = MongoUsageLedger(database, archive_every=4)
    settle_many(ledger, 10)
    archived = list(database.request_log.find({}, sort=[("seq", 1)]))
    assert [entry["seq"] for entry in archived] == list(range(1, 9))
    assert all((entry["user_id"], entry["period"]) == ("usr_1", "2026-11") for entry in archived)
    assert [entry["_id"] for entry in database.usage.find_one({"_id": "usr_1:2026-11"})["journal"]] == ["r8", "r9"]
    statement = ledger.statement("usr_1", "2026-11")
    assert [entry.seq for entry in statement.log] == list(range(1, 11))
    assert sum(entry.charged for entry in statement.log) == statement.tokens_used == sum(i % 7 + 3 for i in range(10))


def test_an_archive_cut_short_is_repaired_by_the_next_and_never_counted_twice(database, monkeypatch):
    ledger = MongoUsageLedger(database, archive_every=4)

    def crash(*_):
        raise ConnectionError("the function died between copying and dropping")

    monkeypatch.setattr(ledger, "_drop_from_journal", crash)
    with pytest.raises(ConnectionError):
        settle_many(ledger, 4)
    # Copied to request_log and still in the journal: readers take each line once.
    assert database.request_log.count_documents({}) == 4
    assert len(database.usage.find_one({"_id": "usr_1:2026-11"})["journal"]) == 4
    statement = ledger.statement("usr_1", "2026-11")
    assert len(statement.log) == 4 and sum(entry.charged for entry in statement.log) == statement.tokens_used

    monkeypatch.undo()
    settle_many(ledger, 4, prefix="later")
    assert database.request_log.count_documents({}) == 8
    assert database.usage.find_one({"_id": "usr_1:2026-11"})["journal"] == []
    statement = ledger.statement("usr_1", "2026-11")
    assert [entry.seq for entry in statement.log] == list(range(1, 9))
    assert sum(entry.charged for entry in statement.log) == statement.tokens_used


def test_a_reader_never_sees_the_counter_and_the_log_disagree(database):
    """Statements read while requests of one user settle and archive, concurrently."""
    ledger = MongoUsageLedger(database, archive_every=3)
    done = threading.Event()
    readings: list[tuple[int, int]] = []

    def read() -> None:
        while not done.is_set():
            statement = ledger.statement("usr_1", "2026-11")
            readings.append((statement.tokens_used, sum(entry.charged for entry in statement.log)))

    def write(worker: int) -> None:
        settle_many(ledger, 15, prefix=f"w{worker}-")

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert len(readings) > 5
    assert all(counter == logged for counter, logged in readings), [r for r in readings if r[0] != r[1]][:3]
    final = ledger.statement("usr_1", "2026-11")
    assert len(final.log) == 60 and [entry.seq for entry in final.log] == list(range(1, 61))


def test_a_request_that_outlived_its_reservation_is_still_charged_once(database):
    ledger = MongoUsageLedger(database)
    slow = ledger.reserve(wanted("slow", 300), minimum=10, quota=1000, now=NOW)
    later = NOW + timedelta(minutes=3)
    # Another request, needing the room the expired hold still takes, drops it as it reserves.
    ledger.reserve(wanted("next", 800, now=later), minimum=10, quota=1000, now=later)
    assert [h["id"] for h in database.usage.find_one({"_id": "usr_1:2026-11"})["reservations"]] == ["next"]
    assert ledger.settle(slow, outcome(20, 30, at=later), quota=1000) == 50
    assert ledger.settle(slow, outcome(20, 30, at=later), quota=1000) == 50
    assert ledger.usage("usr_1", "2026-11", now=later).tokens_used == 50 == log_sum(database)
    assert database.usage.find_one({"_id": "usr_1:2026-11"})["committed"] == 850  # used, and the other's hold


def test_a_month_recorded_by_an_earlier_version_carries_on(database):
    """Months written before `committed` and map tallies existed: lists of tallies, no counter of holds."""
    database.usage.insert_one({
        "_id": "usr_1:2026-11", "user_id": "usr_1", "period": "2026-11", "tokens_used": 40, "requests": 2,
        "reservations": [], "by_model": [{"key": "m1", "tokens": 40, "requests": 2}],
        "by_day": [{"key": "2026-11-28", "tokens": 40, "requests": 2}],
    })
    database.request_log.insert_many([
        {"_id": old, "user_id": "usr_1", "period": "2026-11", "request_id": "old", "key_id": "key_1", "model": "m1",
         "status": "ok", "prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20, "created_at": NOW}
        for old in ("old1", "old2")])
    ledger = MongoUsageLedger(database)
    held = ledger.reserve(wanted("new", 100), minimum=1, quota=1000, now=NOW)
    assert held.tokens == 100
    ledger.settle(held, outcome(5, 5, model="m1"), quota=1000)
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.requests, usage.by_model["m1"].tokens, usage.by_day["2026-11-28"].requests) == (50, 3, 50, 3)
    statement = ledger.statement("usr_1", "2026-11")
    assert statement.tokens_used == sum(line.charged for line in statement.log) == 50
    assert database.usage.find_one({"_id": "usr_1:2026-11"})["committed"] == 50


class LosesTheFirstReply:
    """The month collection, except that the first `method` call reaches the server and then
    loses its reply, as a connection that fails mid-request does."""

    def __init__(self, collection, method: str) -> None:
        self._collection, self._method, self.lost = collection, method, 0

    def __getattr__(self, name):
        real = getattr(self._collection, name)
        if name != self._method or self.lost:
            return real

        def applied_then_lost(*args, **kwargs):
            real(*args, **kwargs)
            self.lost += 1
            raise AutoReconnect("connection closed")

        return applied_then_lost


def test_a_reservation_whose_reply_was_lost_holds_once(database):
    ledger = MongoUsageLedger(database)
    ledger.reserve(wanted("first", 100), minimum=10, quota=1000, now=NOW)  # the month exists
    ledger._usage = flaky = LosesTheFirstReply(ledger._usage, "update_one")
    held = ledger.reserve(wanted("r1", 300), minimum=10, quota=1000, now=NOW)
    assert flaky.lost == 1 and held.tokens == 300
    month = database.usage.find_one({"_id": "usr_1:2026-11"})
    assert [h["id"] for h in month["reservations"]] == ["first", "r1"] and month["committed"] == 400


def test_a_settlement_whose_reply_was_lost_is_charged_once(database):
    ledger = MongoUsageLedger(database)
    held = ledger.reserve(wanted("r1", 300), minimum=10, quota=1000, now=NOW)
    ledger._usage = flaky = LosesTheFirstReply(ledger._usage, "find_one_and_update")
    assert ledger.settle(held, outcome(20, 30), quota=1000) == 50
    assert flaky.lost == 1
    usage = MongoUsageLedger(database).usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.requests, usage.tokens_reserved) == (50, 1, 0) and log_sum(database) == 50
