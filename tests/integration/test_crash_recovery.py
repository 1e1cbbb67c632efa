"""A function instance that dies between any two steps of a chat, on real stores and a real
model server over HTTP: nothing is lost or counted twice, and what it held heals by expiry or
by the next request. A chat held at levels above its user's month (a team's, a key's) may die
between those levels' steps too: each level heals when its hold expires.

Each case runs one chat in a process of its own that exits (os._exit, no cleanup runs) right
after the step named, then checks the ledger as a reader sees it, then lets a later request
run once the dead one's reservation has expired.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from infergate.domain.alerts import NoAlerts
from infergate.domain.ledger import Level
from infergate.schemas.chat import ChatRequest
from infergate.stores.redis_keys import shard
from infergate.stores.usage import MongoUsageLedger
from tests.support import services
from tests.support.accounting import build_services, chat_once, ledger_totals, log_lines, principal

CRASHED = 86
WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PERIOD = "2026-11"
# Worst case 134 tokens (the prompt's bound, 74, plus 60); the model answers in 10 (7 + 3).
REQUEST = ChatRequest(prompt="hi", max_tokens=60)
WORST_CASE, USED = 134, 10
# While a dead request's hold stands, too little of this remains for another chat.
QUOTA = 200


def _die_after(owner, method: str) -> None:
    original = getattr(owner, method)

    def then_die(*args, **kwargs):
        original(*args, **kwargs)
        os._exit(CRASHED)

    setattr(owner, method, then_die)


def _die_before(owner, method: str) -> None:
    setattr(owner, method, lambda *args, **kwargs: os._exit(CRASHED))


def _chat_until(args: tuple) -> None:
    """A function instance that dies at `step` of one chat."""
    mongo_uri, database, redis_url, ollama_url, prefix, user, step, *levels = args
    services = build_services(mongo_uri, database, redis_url, ollama_url, clock=lambda: WHEN, redis_key_prefix=prefix)
    # Archive at every line, so that the archive's own steps are boundaries too.
    ledger = services.ledger = MongoUsageLedger(pymongo.MongoClient(mongo_uri, tz_aware=True)[database], archive_every=1,
                                                alerts=(alerts := NoAlerts()))
    {
        "admitted": lambda: _die_after(services.gatekeeper, "admit"),
        "reserved": lambda: _die_after(ledger, "reserve"),
        "answered": lambda: _die_after(services.servers["ollama"], "chat"),
        "settled": lambda: _die_before(ledger, "_archive"),
        "copied to the log": lambda: _die_before(ledger, "_drop_from_journal"),
        "archived": lambda: _die_after(ledger, "settle"),
        "concluded": lambda: _die_after(services.gatekeeper, "conclude"),
        "user charged": lambda: _die_before(ledger, "_settle_levels"),
        "one level charged": lambda: _die_after(alerts, "charged"),  # told of each level once it is charged
    }[step]()
    chat_once(services, principal(quota=QUOTA, user=user, levels=tuple(levels)), REQUEST)
    os._exit(0)  # the step never came


STEPS = ["admitted", "reserved", "answered", "settled", "copied to the log", "archived", "concluded"]
SETTLED = {"settled", "copied to the log", "archived", "concluded"}


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_each_step_loses_nothing_and_counts_nothing_twice(step, database, mongo_uri, redis_url, ollama_url):
    user, prefix = f"usr_{STEPS.index(step)}", f"crash:{STEPS.index(step)}:{os.getpid()}:"
    process = multiprocessing.get_context("spawn").Process(
        target=_chat_until, args=((mongo_uri, database.name, redis_url, ollama_url, prefix, user, step),))
    process.start()
    process.join(120)
    assert process.exitcode == CRASHED

    # What a reader sees right after the crash.
    ledger = MongoUsageLedger(database)
    counter, logged, ok = ledger_totals(database, user, PERIOD)
    usage = ledger.usage(user, PERIOD, now=WHEN)
    charged = USED if step in SETTLED else 0
    assert counter == logged == charged and ok == (step in SETTLED)
    assert usage.tokens_reserved == (WORST_CASE if step in ("reserved", "answered") else 0)
    lines = [line["_id"] for line in log_lines(database) if line["request_id"].startswith("load-")]
    assert len(lines) == len(set(lines)) == (1 if step in SETTLED else 0)

    # Tokens per minute: the dead request counts its worst case until the window moves past it
    # (the key expires with the window); a request that concluded counts what it used.
    tokens_per_minute = services.redis_client_of(redis_url)
    window = shard(prefix, user) + f"rl:tpm:{user}"
    counted = [int(member.rsplit(b":", 1)[1]) for member in tokens_per_minute.zrange(window, 0, -1)]
    if step == "concluded":
        assert counted == [USED]
    else:
        assert counted == [WORST_CASE]
        assert 0 < tokens_per_minute.pttl(window) <= 60_000

    # A later request, once the dead one's reservation has expired, is served and charged exactly.
    who = principal(quota=QUOTA, user=user)
    if step in ("reserved", "answered"):
        assert chat_once(build_services(mongo_uri, database.name, redis_url, ollama_url, clock=lambda: WHEN), who,
                         REQUEST)[0] == "quota_held_in_flight"
    healer = build_services(mongo_uri, database.name, redis_url, ollama_url, clock=lambda: later)
    healer.ledger = MongoUsageLedger(database, archive_every=1)
    later = WHEN + healer.meter.reservation_ttl + timedelta(seconds=1)  # the time to live its settings give holds
    assert chat_once(healer, who, REQUEST) == ("ok", USED)

    counter, logged, ok = ledger_totals(database, user, PERIOD)
    assert counter == logged == charged + USED and ok == (2 if step in SETTLED else 1)
    assert ledger.usage(user, PERIOD, now=later).tokens_reserved == 0
    # Every line archived exactly once, the journal emptied.
    archived = [line["_id"] for line in database.request_log.find({"user_id": user})]
    assert len(archived) == len(set(archived)) == ok
    assert database.usage.find_one({"_id": f"{user}:{PERIOD}"})["journal"] == []


def team_and_key(step: str) -> tuple[Level, Level]:
    """A team's month and a key's budget month, each roomy: the chat is held at both."""
    return (Level("team", f"team_crash_{LEVEL_STEPS.index(step)}", 1_000_000, None),
            Level("key", f"key_crash_{LEVEL_STEPS.index(step)}", None, 1_000_000))


LEVEL_STEPS = ["reserved", "user charged", "one level charged", "archived"]
CHARGED_AT = {"reserved": (0, 0, 0), "user charged": (USED, 0, 0), "one level charged": (USED, USED, 0),
              "archived": (USED, USED, USED)}  # what the user, the team and the key were charged when it died


@pytest.mark.parametrize("step", LEVEL_STEPS)
def test_a_crash_between_levels_heals_each_level_by_the_request_log(step, database, mongo_uri, redis_url,
                                                                    ollama_url):
    user, levels = f"usr_levels_{LEVEL_STEPS.index(step)}", team_and_key(step)
    prefix = f"crash:levels:{LEVEL_STEPS.index(step)}:{os.getpid()}:"
    process = multiprocessing.get_context("spawn").Process(
        target=_chat_until, args=((mongo_uri, database.name, redis_url, ollama_url, prefix, user, step, *levels),))
    process.start()
    process.join(120)
    assert process.exitcode == CRASHED

    ledger = MongoUsageLedger(database)
    at_levels = [ledger.level_usage(level, PERIOD, now=WHEN) for level in levels]
    assert (ledger_totals(database, user, PERIOD)[0], *(month.tokens_used for month in at_levels)) == CHARGED_AT[step]
    held = [month.tokens_reserved for month in at_levels]
    assert held == [0 if charged else WORST_CASE for charged in CHARGED_AT[step][1:]]  # a level's hold stands until charged

    healer = build_services(mongo_uri, database.name, redis_url, ollama_url, clock=lambda: later)
    later = WHEN + healer.meter.reservation_ttl + timedelta(seconds=1)
    assert chat_once(healer, principal(quota=QUOTA, user=user, levels=levels), REQUEST) == ("ok", USED)

    logged = ledger_totals(database, user, PERIOD)
    for month in (ledger.level_usage(level, PERIOD, now=later) for level in levels):
        assert (month.tokens_used, month.requests, month.tokens_reserved) == (logged[1], logged[2], 0), \
            "each level sums the user's log"
