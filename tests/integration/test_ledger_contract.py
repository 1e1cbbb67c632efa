"""The usage ledger's contract (domain/ledger.py), held by both of its implementations: the
MongoDB one the functions use and the in-memory one the unit tests use, so that a rule proved
in memory holds in MongoDB too. What only MongoDB's ledger does (its journal, its archive, a
reply lost on the wire) is tests/integration/test_usage_ledger.py's."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from infergate.domain.ledger import HoldsFull, RequestOutcome, Reservation, UsageLedger
from infergate.domain.prices import FREE, Price
from infergate.stores.usage import MongoUsageLedger
from tests.support.concurrency import at_once
from tests.support.fakes import MemoryLedger

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "mongodb"])
def ledger(request) -> UsageLedger:
    if request.param == "memory":
        return MemoryLedger()
    return MongoUsageLedger(request.getfixturevalue("database"))


def wanted(rid: str, tokens: int, *, now: datetime = NOW, user: str = "usr_1", period: str = "2026-11") -> Reservation:
    return Reservation(rid, user, period, tokens, now + timedelta(minutes=2))


def outcome(prompt: int, completion: int, *, status: str = "ok", at: datetime = NOW, model: str = "smollm2:135m",
            user: str = "usr_1") -> RequestOutcome:
    return RequestOutcome("req", user, "key_1", model, status, prompt, completion, 5, at)


def logged(ledger: UsageLedger, user: str = "usr_1", period: str = "2026-11") -> tuple[int, int]:
    """The month's counter, and the sum of its request log's charges."""
    statement = ledger.statement(user, period)
    return statement.tokens_used, sum(line.charged for line in statement.log)


def test_settling_charges_the_real_count_and_logs_it(ledger):
    held = ledger.reserve(wanted("r1", 500), minimum=10, quota=1000, now=NOW)
    assert held.tokens == 500
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 500

    assert ledger.settle(held, outcome(20, 30), quota=1000) == 50
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (50, 0, 1)
    (line,) = ledger.statement("usr_1", "2026-11").log
    assert (line.reservation_id, line.prompt_tokens, line.completion_tokens, line.charged, line.status, line.seq) == (
        "r1", 20, 30, 50, "ok", 1)
    assert logged(ledger) == (50, 50)


def test_each_request_costs_its_charge_at_its_price_and_every_total_is_the_sum_of_those(ledger):
    eight_b, seventy_b = Price(150_000, 600_000), Price(900_000, 900_000)
    asked = [("r1", 123, 45, "llama3.1:8b", eight_b), ("r2", 10, 0, "llama3.1:8b", eight_b),
             ("r3", 1000, 250, "llama3.1:70b", seventy_b), ("r4", 7, 3, "tiny:latest", FREE)]
    for rid, prompt, completion, model, price in asked:
        held = ledger.reserve(wanted(rid, 2000), minimum=1, quota=100_000, now=NOW)
        ledger.settle(held, replace(outcome(prompt, completion, model=model), price=price), quota=100_000)
    failed = ledger.reserve(wanted("r5", 2000), minimum=1, quota=100_000, now=NOW)
    ledger.release(failed, replace(outcome(0, 0, status="upstream_error", model="llama3.1:70b"), price=seventy_b))

    costs = {"r1": 45, "r2": 2, "r3": 1125, "r4": 0, "r5": 0}  # 45.45, 1.5 (half up), 1125, free, failed
    statement = ledger.statement("usr_1", "2026-11")
    assert {line.reservation_id: line.cost_micros for line in statement.log} == costs
    assert statement.cost_micros == sum(costs.values()) == 1172
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert usage.cost_micros == 1172
    assert {model: tally.cost_micros for model, tally in usage.by_model.items()} == {
        "llama3.1:8b": 47, "llama3.1:70b": 1125, "tiny:latest": 0}
    assert usage.by_day["2026-11-28"].cost_micros == 1172
    summary = ledger.period_summary("2026-11", top=5)
    assert summary.cost_micros == 1172 and summary.top[0].cost_micros == 1172


def test_a_charge_short_of_the_use_costs_only_what_was_charged(ledger):
    held = ledger.reserve(wanted("r1", 100), minimum=1, quota=1000, now=NOW)
    charged = ledger.settle(held, replace(outcome(80, 70), price=Price(1_000_000, 2_000_000)), quota=1000)
    assert charged == 100
    assert ledger.statement("usr_1", "2026-11").cost_micros == 80 + 2 * 20  # the prompt first, then 20 generated


def test_a_released_reservation_costs_nothing_but_is_logged(ledger):
    held = ledger.reserve(wanted("r1", 500), minimum=10, quota=1000, now=NOW)
    ledger.release(held, outcome(0, 0, status="upstream_error"))
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.tokens_reserved, usage.requests) == (0, 0, 0)
    assert [(line.status, line.charged) for line in ledger.statement("usr_1", "2026-11").log] == [("upstream_error", 0)]


def test_a_reservation_is_capped_to_what_remains_and_refused_below_its_minimum(ledger):
    assert ledger.reserve(wanted("r1", 600), minimum=10, quota=1000, now=NOW).tokens == 600
    assert ledger.reserve(wanted("r2", 1000), minimum=10, quota=1000, now=NOW).tokens == 400
    assert ledger.reserve(wanted("r3", 5), minimum=1, quota=1000, now=NOW) is None
    assert ledger.reserve(wanted("r4", 2000), minimum=1001, quota=1000, now=NOW) is None
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == 1000


def test_a_new_months_first_reservation_is_capped_by_the_quota(ledger):
    assert ledger.reserve(wanted("r1", 5000), minimum=10, quota=1000, now=NOW).tokens == 1000


def test_a_charge_is_never_more_than_was_held(ledger):
    other = ledger.reserve(wanted("other", 900), minimum=1, quota=1000, now=NOW)
    mine = ledger.reserve(wanted("mine", 100), minimum=1, quota=1000, now=NOW)
    # The model used more than was held for it: only what was held is charged.
    assert ledger.settle(mine, outcome(80, 70), quota=1000) == 100
    assert ledger.settle(other, outcome(400, 500), quota=1000) == 900
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_used == 1000
    assert logged(ledger) == (1000, 1000)


def test_an_abandoned_reservation_frees_itself_when_it_expires(ledger):
    assert ledger.reserve(wanted("crashed", 900), minimum=900, quota=1000, now=NOW)
    assert ledger.reserve(wanted("r2", 500), minimum=500, quota=1000, now=NOW) is None
    later = NOW + timedelta(minutes=3)
    assert ledger.usage("usr_1", "2026-11", now=later).tokens_reserved == 0
    assert ledger.reserve(wanted("r2", 500, now=later), minimum=500, quota=1000, now=later).tokens == 500


def test_a_user_holds_at_most_most_held_reservations_each_freed_as_it_ends_or_expires(ledger):
    """The holds are the user's requests in flight: the plan's concurrency limit, held here too."""
    first = ledger.reserve(wanted("a", 10), minimum=1, quota=1000, now=NOW, most_held=2)
    assert ledger.reserve(wanted("b", 10), minimum=1, quota=1000, now=NOW, most_held=2)
    with pytest.raises(HoldsFull):
        ledger.reserve(wanted("c", 10), minimum=1, quota=1000, now=NOW, most_held=2)
    assert ledger.reserve(wanted("other", 10, user="usr_2"), minimum=1, quota=1000, now=NOW, most_held=2)

    ledger.release(first, outcome(0, 0, status="cancelled"))
    assert ledger.reserve(wanted("c", 10), minimum=1, quota=1000, now=NOW, most_held=2)
    later = NOW + timedelta(minutes=3)  # "b" and "c" never ended: their holds expire
    assert ledger.reserve(wanted("d", 10, now=later), minimum=1, quota=1000, now=later, most_held=1)


def test_concurrent_reservations_never_hold_more_than_most_held(ledger):
    def one() -> bool:
        try:
            return ledger.reserve(wanted(uuid.uuid4().hex, 10), minimum=1, quota=10**6, now=NOW, most_held=3) is not None
        except HoldsFull:
            return False

    assert sorted(at_once(20, one)) == [False] * 17 + [True] * 3


def test_a_request_that_outlived_its_reservation_is_still_charged_once(ledger):
    slow = ledger.reserve(wanted("slow", 300), minimum=10, quota=1000, now=NOW)
    later = NOW + timedelta(minutes=3)
    # Another request, needing the room the expired hold still takes, drops it as it reserves.
    assert ledger.reserve(wanted("next", 800, now=later), minimum=10, quota=1000, now=later).tokens == 800
    assert ledger.settle(slow, outcome(20, 30, at=later), quota=1000) == 50
    assert ledger.settle(slow, outcome(20, 30, at=later), quota=1000) == 50
    assert ledger.usage("usr_1", "2026-11", now=later).tokens_used == 50
    assert logged(ledger) == (50, 50)


def test_usage_is_broken_down_by_model_and_by_day(ledger):
    day_two = NOW + timedelta(days=1)
    for rid, model, at, tokens in [("a", "m1", NOW, 10), ("b", "m2", NOW, 20), ("c", "m1", day_two, 30)]:
        held = ledger.reserve(wanted(rid, 100, now=at), minimum=1, quota=1000, now=at)
        ledger.settle(held, outcome(tokens, 0, at=at, model=model), quota=1000)
    usage = ledger.usage("usr_1", "2026-11", now=day_two)
    assert {m: (t.tokens, t.requests) for m, t in usage.by_model.items()} == {"m1": (40, 2), "m2": (20, 1)}
    assert {d: (t.tokens, t.requests) for d, t in usage.by_day.items()} == {"2026-11-28": (30, 2), "2026-11-29": (30, 1)}


def test_model_names_with_dots_are_tallied_under_their_own_names(ledger):
    held = ledger.reserve(wanted("r1", 100), minimum=1, quota=1000, now=NOW)
    ledger.settle(held, outcome(10, 5, model="llama3.2:1b"), quota=1000)
    assert {m: (t.tokens, t.requests) for m, t in ledger.usage("usr_1", "2026-11", now=NOW).by_model.items()} == {
        "llama3.2:1b": (15, 1)}


def test_users_and_months_are_accounted_apart(ledger):
    assert ledger.reserve(wanted("a", 1000, user="usr_a"), minimum=1, quota=1000, now=NOW)
    assert ledger.reserve(wanted("b", 1000, user="usr_b"), minimum=1, quota=1000, now=NOW)
    assert ledger.reserve(wanted("c", 1000, user="usr_a", period="2026-12"), minimum=1, quota=1000, now=NOW)
    assert ledger.usage("usr_a", "2027-01", now=NOW).tokens_reserved == 0


def test_settling_or_releasing_again_changes_nothing(ledger):
    settled = ledger.reserve(wanted("s", 500), minimum=10, quota=1000, now=NOW)
    released = ledger.reserve(wanted("r", 500), minimum=10, quota=1000, now=NOW)
    assert ledger.settle(settled, outcome(20, 30), quota=1000) == 50
    ledger.release(released, outcome(0, 0, status="upstream_error"))
    # A retry, or a repair, of either.
    assert ledger.settle(settled, outcome(20, 30), quota=1000) == 50
    ledger.release(released, outcome(0, 0, status="upstream_error"))
    usage = ledger.usage("usr_1", "2026-11", now=NOW)
    assert (usage.tokens_used, usage.requests, usage.tokens_reserved) == (50, 1, 0)
    assert [entry.reservation_id for entry in ledger.statement("usr_1", "2026-11").log] == ["s", "r"]


def test_concurrent_reservations_never_hold_more_than_the_quota(ledger):
    """30 requests race for one user's month: the holds fit the quota, and every one granted is held."""
    granted: list[int] = []
    lock, barrier = threading.Lock(), threading.Barrier(30)

    def attempt(index: int) -> None:
        barrier.wait()
        held = ledger.reserve(wanted(f"r{index}", 100), minimum=60, quota=1000, now=NOW)
        if held:
            with lock:
                granted.append(held.tokens)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) <= 1000 and len(granted) == 10
    assert ledger.usage("usr_1", "2026-11", now=NOW).tokens_reserved == sum(granted)


def test_a_periods_summary_totals_every_user_and_names_the_heaviest(ledger):
    for user, tokens in (("usr_a", 30), ("usr_b", 70), ("usr_c", 50)):
        held = ledger.reserve(wanted(f"{user}-r", 100, user=user), minimum=1, quota=1000, now=NOW)
        ledger.settle(held, outcome(tokens, 0, user=user), quota=1000)
    summary = ledger.period_summary("2026-11", top=2)
    assert (summary.tokens_used, summary.requests, summary.users) == (150, 3, 3)
    assert [(t.user_id, t.tokens, t.requests) for t in summary.top] == [("usr_b", 70, 1), ("usr_c", 50, 1)]
