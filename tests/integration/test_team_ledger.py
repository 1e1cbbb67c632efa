"""A team's month in the MongoDB ledger (stores/levels.py), and every level like it (a key's
budget, a quota of one model): every request holds at its team what it holds at its user's month, is charged there what it is charged at the user's, and never takes
the team past its token quota or its budget, whatever the interleaving; a crash between the two
charges heals when the team's hold expires."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from infergate.domain.ledger import Level, LevelRefused, RequestOutcome, Reservation
from infergate.domain.prices import Price, WorstCost
from infergate.stores.levels import MongoLevels
from infergate.stores.usage import MongoUsageLedger
from tests.support.concurrency import at_once

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PERIOD = "2026-12"
PRICE = Price(input_per_million_micros=1_000_000, output_per_million_micros=3_000_000)  # 1 and 3 micros a token
PROMPT, ANSWER = 20, 80  # each request's bounds: what it holds, at most 20 + 3 × 80 = 260 micros
WORST = WorstCost(PRICE, PROMPT, ANSWER)


@pytest.fixture
def ledger(database) -> MongoUsageLedger:
    return MongoUsageLedger(database)


def team(*, tokens: int | None = None, budget: int | None = None) -> Level:
    return Level("team", f"team_{uuid.uuid4().hex[:8]}", tokens, budget)


def wanted(user: str, level: Level, *, now: datetime = NOW) -> Reservation:
    return Reservation(uuid.uuid4().hex, user, PERIOD, PROMPT + ANSWER, now + timedelta(minutes=2),
                       micros=WORST(PROMPT + ANSWER), levels=(level,))


def answered(user: str, prompt: int, completion: int) -> RequestOutcome:
    return RequestOutcome("req", user, "key_1", "llama3.1:8b", "ok", prompt, completion, 5, NOW, price=PRICE)


def reserve(ledger, reservation: Reservation, *, quota: int = 1_000_000, now: datetime = NOW) -> Reservation | None:
    return ledger.reserve(reservation, minimum=PROMPT + 1, quota=quota, now=now, worst=WORST)


def members_total(ledger, users: list[str]) -> tuple[int, int]:
    """The members' log lines summed: tokens and cost."""
    lines = [line for user in users for line in ledger.statement(user, PERIOD).log]
    return sum(line.charged for line in lines), sum(line.cost_micros for line in lines)


def test_a_team_member_holds_and_is_charged_at_the_team_as_at_their_own_month(ledger):
    level = team(tokens=10_000, budget=1_000_000)
    held = reserve(ledger, wanted("usr_a", level))
    standing = ledger.level_usage(level, PERIOD, now=NOW)
    assert (standing.tokens_reserved, standing.micros_reserved) == (100, 260)

    charged = ledger.settle(held, answered("usr_a", 12, 30), quota=1_000_000)
    standing = ledger.level_usage(level, PERIOD, now=NOW)
    assert charged == 42 and (standing.tokens_used, standing.cost_micros, standing.requests) == (42, 12 + 90, 1)
    assert (standing.tokens_reserved, standing.micros_reserved) == (0, 0)
    assert members_total(ledger, ["usr_a"]) == (42, 102)


@pytest.mark.parametrize(("kind", "limit", "callers"), [
    ("team", "tokens", 4), ("team", "budget", 4),  # many members of one team
    ("key", "budget", 1), ("key_model", "tokens", 1),  # one key's budget; one key's quota of one model
])
def test_many_requests_racing_a_level_never_take_it_past_its_limit_and_it_sums_their_logs(ledger, kind, limit,
                                                                                          callers):
    level = Level(kind, f"{kind}_{uuid.uuid4().hex[:8]}", 1_000 if limit == "tokens" else None,
                  2_000 if limit == "budget" else None)
    users = [f"usr_{uuid.uuid4().hex[:8]}" for _ in range(callers)]
    turns = itertools.count()

    def chat() -> str:
        user = users[next(turns) % len(users)]
        try:
            held = reserve(ledger, wanted(user, level))
        except LevelRefused as refused:
            assert refused.level == level and refused.limit == limit
            return "refused"
        if held is None:
            return "quota"
        ledger.settle(held, answered(user, min(15, held.tokens), max(0, held.tokens - 15)), quota=1_000_000)
        return "charged"

    outcomes = at_once(32, chat)
    standing = ledger.level_usage(level, PERIOD, now=NOW)
    assert "charged" in outcomes and "refused" in outcomes
    spent = standing.tokens_used if limit == "tokens" else standing.cost_micros
    assert spent <= (1_000 if limit == "tokens" else 2_000), "no overspend"
    assert (standing.tokens_used, standing.cost_micros) == members_total(ledger, users), "no drift"
    assert (standing.tokens_reserved, standing.micros_reserved) == (0, 0)


def test_a_refusal_at_the_team_releases_what_the_user_held(ledger):
    level = team(budget=300)
    first = reserve(ledger, wanted("usr_a", level))
    with pytest.raises(LevelRefused) as refused:
        reserve(ledger, wanted("usr_b", level))
    assert (refused.value.limit, refused.value.in_flight) == ("budget", True)  # held by usr_a's request
    assert ledger.usage("usr_b", PERIOD, now=NOW).tokens_reserved == 0
    ledger.settle(first, answered("usr_a", 20, 80), quota=1_000_000)  # costs the whole budget held: 260
    with pytest.raises(LevelRefused) as spent:
        reserve(ledger, wanted("usr_b", level))
    assert (spent.value.limit, spent.value.in_flight, spent.value.remaining) == ("budget", False, 40)


def test_a_hold_is_capped_to_what_the_team_has_left_and_the_users_hold_with_it(ledger):
    level = team(tokens=150)
    reserve(ledger, wanted("usr_a", level))
    capped = reserve(ledger, wanted("usr_b", level))
    assert capped.tokens == 50 and capped.micros == WORST(50)
    assert ledger.usage("usr_b", PERIOD, now=NOW).tokens_reserved == 50


def test_a_crash_between_the_users_charge_and_the_teams_heals_when_the_teams_hold_expires(ledger, monkeypatch):
    level = team(tokens=10_000)
    held = reserve(ledger, wanted("usr_a", level))
    with monkeypatch.context() as crash:
        crash.setattr(ledger, "_settle_levels", lambda *args: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            ledger.settle(held, answered("usr_a", 10, 20), quota=1_000_000)
    assert ledger.level_usage(level, PERIOD, now=NOW).tokens_used == 0  # the user's month has it, the team not yet

    later = NOW + timedelta(minutes=3)  # the hold has expired: the next request's hold repairs the team
    reserve(ledger, replace(wanted("usr_b", level, now=later)), now=later)
    standing = ledger.level_usage(level, PERIOD, now=later)
    assert (standing.tokens_used, standing.cost_micros) == members_total(ledger, ["usr_a"]) == (30, 70)


def test_a_failed_request_costs_nothing_at_any_level(ledger):
    level = team(tokens=10_000, budget=10_000)
    held = reserve(ledger, wanted("usr_a", level))
    ledger.release(held, replace(answered("usr_a", 0, 0), status="upstream_error"))
    standing = ledger.level_usage(level, PERIOD, now=NOW)
    assert (standing.tokens_used, standing.cost_micros, standing.tokens_reserved, standing.micros_reserved) == (0, 0, 0, 0)


def test_a_hold_dropped_while_another_request_reads_the_month_is_not_written_back(ledger, monkeypatch):
    level = team(tokens=150)  # the second request does not fit beside the first: it reads the month, then writes it
    first = reserve(ledger, wanted("usr_a", level))
    read = MongoLevels._month

    def and_meanwhile_the_first_is_dropped(self, *args):
        month = read(self, *args)
        monkeypatch.setattr(MongoLevels, "_month", read)
        ledger._resize(first, None)  # as when a later level refuses the first request
        return month

    monkeypatch.setattr(MongoLevels, "_month", and_meanwhile_the_first_is_dropped)
    second = reserve(ledger, wanted("usr_b", level))
    assert ledger.level_usage(level, PERIOD, now=NOW).tokens_reserved == second.tokens == 100
