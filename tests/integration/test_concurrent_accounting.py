"""Quotas and rate limits under concurrency, crashes and month ends, on real stores.

Invariants, whatever the interleaving: tokens charged in a month never
exceed the quota; the usage counter equals the sum of the request log;
every token a caller was told it used was charged, and a failed request
cost nothing.
"""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from infergate.api.chat import task
from infergate.domain.periods import period_of
from infergate.domain.tokens import prompt_tokens_upper_bound
from infergate.schemas.chat import ChatRequest
from infergate.stores.usage import MongoUsageLedger
from tests.support.accounting import build_services, chat_once, chats_in_a_process, ledger_totals, log_lines, principal
from tests.support.concurrency import at_once

# 50 one-letter words: Ollama-compatible server counts 56 prompt tokens and
# echoes 52; the gateway's prompt bound is 171, so each chat reserves far
# more than it will use, and the quota is mostly held, not spent.
PROMPT = " ".join("a" * 50)
REQUEST = ChatRequest(prompt=PROMPT, max_tokens=60)
MINIMUM = prompt_tokens_upper_bound(task(REQUEST).messages) + 1  # the least a chat can be admitted with


@pytest.mark.parametrize("quota", [300, 3000])
def test_fifty_concurrent_chats_never_overspend_and_leave_counter_equal_to_log(database, mongo_uri, redis_target,
                                                                               ollama_url, quota):
    services = build_services(mongo_uri, database.name, redis_target.url, ollama_url, redis_cluster=redis_target.cluster)
    who = principal(quota=quota)
    results = at_once(50, lambda: chat_once(services, who, REQUEST))

    statuses = {status for status, _ in results}
    assert statuses <= {"ok", "quota_exceeded", "quota_held_in_flight"}, statuses
    counter, log_sum, ok_logged = ledger_totals(database, who.user_id, period_of(datetime.now(UTC)))
    told = sum(tokens for _, tokens in results)
    assert counter <= quota
    assert counter == log_sum == told
    assert ok_logged == sum(status == "ok" for status, _ in results) > 0
    if quota - counter >= MINIMUM:
        # Enough was left all along: a refusal was for holds in flight, never a spent quota.
        assert "quota_exceeded" not in statuses


def test_chats_from_many_processes_hold_the_same_invariants(database, mongo_uri, redis_url, ollama_url):
    quota, processes, each = 2000, 4, 10
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        batches = pool.map(chats_in_a_process, [
            (mongo_uri, database.name, redis_url, ollama_url, quota, each, REQUEST.model_dump_json())
        ] * processes)
    results = [result for batch in batches for result in batch]
    counter, log_sum, _ = ledger_totals(database, "usr_load", period_of(datetime.now(UTC)))
    assert {status for status, _ in results} <= {"ok", "quota_exceeded", "quota_held_in_flight"}
    assert counter <= quota
    assert counter == log_sum == sum(tokens for _, tokens in results)


def test_n_plus_k_concurrent_requests_against_a_limit_of_n_admit_exactly_n(database, mongo_uri, redis_target, ollama_url):
    services = build_services(mongo_uri, database.name, redis_target.url, ollama_url, redis_cluster=redis_target.cluster)
    who = principal(quota=10_000_000, rpm=20, key="key_burst")
    results = at_once(30, lambda: chat_once(services, who, ChatRequest(prompt="hi", max_tokens=3)))
    assert sum(status == "ok" for status, _ in results) == 20
    assert sum(status == "rate_limited" for status, _ in results) == 10


def test_tokens_per_minute_hold_under_concurrency(database, mongo_uri, redis_target, ollama_url):
    services = build_services(mongo_uri, database.name, redis_target.url, ollama_url, redis_cluster=redis_target.cluster)
    # Each chat is admitted for its worst case (171 + 60 = 231 tokens): 4 fit in 1000.
    who = principal(quota=10_000_000, tpm=1000, user="usr_tpm", key="key_tpm")
    results = at_once(12, lambda: chat_once(services, who, REQUEST))
    admitted = sum(status == "ok" for status, _ in results)
    assert 4 <= admitted < 12
    assert {status for status, _ in results} <= {"ok", "rate_limited"}


def _crash_mid_chat(args: tuple) -> None:
    """A function instance that dies between reserving and settling."""
    import os

    mongo_uri, database, redis_url, ollama_url = args
    services = build_services(mongo_uri, database, redis_url, ollama_url)

    class DyingModel:
        def chat(self, **_):
            os._exit(3)

    services.servers = {"ollama": DyingModel()}
    services.inference.chat(principal(quota=1000, user="usr_crash"), task(ChatRequest(prompt="hi", max_tokens=900)),
                            request_id="doomed")


def test_a_crash_between_reserve_and_settle_is_healed_by_expiry(database, mongo_uri, redis_url, ollama_url):
    process = multiprocessing.get_context("spawn").Process(
        target=_crash_mid_chat, args=((mongo_uri, database.name, redis_url, ollama_url),))
    process.start()
    process.join(60)
    assert process.exitcode == 3

    now = datetime.now(UTC)
    ledger = MongoUsageLedger(database)
    held = ledger.usage("usr_crash", period_of(now), now=now)
    assert held.tokens_reserved == 974 and held.tokens_used == 0
    who = principal(quota=1000, user="usr_crash")
    # While the dead request's hold stands, less than a prompt's bound remains unheld: held, not spent.
    assert chat_once(build_services(mongo_uri, database.name, redis_url, ollama_url), who,
                     ChatRequest(prompt="hi", max_tokens=800))[0] == "quota_held_in_flight"

    services = build_services(mongo_uri, database.name, redis_url, ollama_url, clock=lambda: later)
    later = now + services.meter.reservation_ttl + timedelta(seconds=1)  # the time to live its settings give holds
    status, tokens = chat_once(services, who, ChatRequest(prompt="hi", max_tokens=800))
    assert status == "ok"
    counter, log_sum, ok_logged = ledger_totals(database, "usr_crash", period_of(now))
    assert counter == log_sum == tokens and ok_logged == 1
    assert not [line for line in log_lines(database) if line["request_id"] == "doomed"]  # the crash cost nothing


def test_a_new_month_starts_empty_at_midnight_utc_on_the_first(database, mongo_uri, redis_url, ollama_url):
    last_second = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    first_second = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)
    clock = {"now": last_second}
    services = build_services(mongo_uri, database.name, redis_url, ollama_url, clock=lambda: clock["now"])
    who = principal(quota=200, user="usr_month")

    assert chat_once(services, who, ChatRequest(prompt="hi", max_tokens=100))[0] == "ok"
    assert chat_once(services, who, ChatRequest(prompt="hi", max_tokens=100))[0] == "ok"
    november = services.usage.of(who)
    assert november.period == "2026-11" and november.tokens_used == 20
    assert november.resets_at == first_second

    clock["now"] = first_second
    december = services.usage.of(who)
    assert (december.period, december.tokens_used, december.tokens_remaining) == ("2026-12", 0, 200)
    assert december.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert chat_once(services, who, ChatRequest(prompt="hi", max_tokens=100))[0] == "ok"
    assert services.usage.of(who).tokens_used == 10
    assert services.usage.of(who, "2026-11").tokens_used == 20
