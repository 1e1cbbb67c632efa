"""Outages fail fast, the same way everywhere: Redis and MongoDB are hung (SIGSTOP) and resumed
(SIGCONT) under load, and Redis loses its data (FLUSHALL) under load; no request outlasts its
store's bound, registration never fails open, no limit held by MongoDB is lifted, nothing is
lost or counted twice, and every log line stays JSON."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
import redis

from infergate.stores.mongo import CALL_SECONDS
from tests.support import services
from tests.support.accounting import log_lines
from tests.support.stack import TIGHT
from tests.support.waiting import wait_for

# The most a request may take while a store is hung: its bound, and a margin for a loaded machine.
WITHIN_SECONDS = CALL_SECONDS + 3


@pytest.fixture(scope="module")
def own(gateway_of):
    """A gateway with stores of its own: they are stopped, resumed and flushed here. Its model
    takes a moment per token, so that streams overlap."""
    # Limits out of the load's way: what is measured here is time and accounting.
    with services.model_server("--token-delay", "0.01") as model_url:
        yield gateway_of("outages", own_stores=True, model_url=model_url,
                         **{**TIGHT, "RATE_LIMIT_RPM": "100000", "RATE_LIMIT_TPM": "100000000",
                            "MAX_CONCURRENT_REQUESTS": "100"})


@contextmanager
def hung(service):
    """Stops the store's process until the block ends: the moment it stopped."""
    os.kill(service.process.pid, signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        os.kill(service.process.pid, signal.SIGCONT)


class Answer(NamedTuple):
    status: int
    started: float  # time.monotonic() when the request was sent
    seconds: float
    tokens: int  # charged


class Load:
    """Chats from a few users, several at once, until stopped: each answer's status and time."""

    def __init__(self, own, keys: list[str], threads: int = 6) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(own, keys[n % len(keys)])) for n in range(threads)]

    def _run(self, own, key: str) -> None:
        with own.client(timeout=120) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                response = http.post("/v1/chat", json={"prompt": "steady load", "max_tokens": 5},
                                     headers={"x-api-key": key})
                tokens = response.json()["usage"]["total_tokens"] if response.status_code == 200 else 0
                self.answers.append(Answer(response.status_code, started, time.monotonic() - started, tokens))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def answered(self, at_least: int) -> bool:
        return len(self.answers) >= at_least


def register_promptly(own, email: str):
    """A registration's answer, which must come within WITHIN_SECONDS whatever is hung."""
    with own.client() as http:
        started = time.monotonic()
        answer = http.post("/v1/register", json={"email": email})
        assert time.monotonic() - started < WITHIN_SECONDS
    return answer


def charged_in_all(own, keys: list[str]) -> int:
    with own.client() as http:
        return sum(http.get("/v1/usage", headers={"x-api-key": key}).json()["tokens_used"] for key in keys)


def test_a_hung_redis_slows_no_request_and_registration_fails_closed(own):
    with own.client() as http:
        keys = [own.register(http)["api_key"] for _ in range(2)]
    with Load(own, keys) as load:
        wait_for(lambda: load.answered(10), what="load before the stop")
        with hung(own.redis):
            during = len(load.answers)
            wait_for(lambda: load.answered(during + 30), what="answers while Redis is hung")
            registration = register_promptly(own, "while-redis-hangs@example.com")
            assert registration.status_code == 503 and registration.headers["Retry-After"], registration.text
            answered_while_hung = load.answers[during:]
        resumed = len(load.answers)
        wait_for(lambda: load.answered(resumed + 10), what="answers after Redis is back")
        with own.client() as http:
            wait_for(lambda: http.post("/v1/register", json={"email": "after-redis@example.com"}).status_code == 201,
                     timeout=10, interval=0.2, what="registration open again once Redis is back")
    assert {answer.status for answer in answered_while_hung} == {200}, "rate limits fail open for chats (the default)"
    assert max(answer.seconds for answer in load.answers) < WITHIN_SECONDS
    assert charged_in_all(own, keys) == sum(answer.tokens for answer in load.answers), "nothing lost, nothing twice"


def test_a_hung_mongodb_fails_requests_fast_and_loses_nothing(own):
    with own.client() as http:
        accounts = [own.register(http) for _ in range(2)]
    keys = [account["api_key"] for account in accounts]
    with Load(own, keys) as load:
        wait_for(lambda: load.answered(10), what="load before the stop")
        with hung(own.mongo) as stopped_at:
            def sent_while_hung() -> list[Answer]:
                # Requests already past their reservation when MongoDB stopped are answered, as
                # charged (see MeteredCall._charge); whenever they finish, they are not counted here.
                return [answer for answer in load.answers if answer.started > stopped_at]
            wait_for(lambda: len(sent_while_hung()) >= 6, what="answers to requests sent while MongoDB is hung")
            registration = register_promptly(own, "while-mongo-hangs@example.com")
            assert registration.status_code == 503 and registration.headers["Retry-After"] == "1"
            answered_while_hung = sent_while_hung()
        resumed = len(load.answers)
        wait_for(lambda: sum(answer.status == 200 for answer in load.answers[resumed:]) >= 10,
                 what="chats served again after MongoDB is back")
    assert {answer.status for answer in answered_while_hung} == {503}
    assert max(answer.seconds for answer in load.answers) < WITHIN_SECONDS

    charged = sum(answer.tokens for answer in load.answers)
    assert charged_in_all(own, keys) == charged, "every token a caller was told it used was charged, once"
    key_ids = {account["key_id"] for account in accounts}
    lines = [line for line in log_lines(own.database()) if line["key_id"] in key_ids]
    assert sum(line["total_tokens"] for line in lines) == charged


class Stream(NamedTuple):
    status: int
    code: str | None  # the error's, for a refusal
    tokens: int  # as its usage event reported them


def streams_of(own, key: str, until: threading.Event, into: list[Stream]) -> None:
    body = {"model": "smollm2:135m", "messages": [{"role": "user", "content": "flush"}], "max_tokens": 20,
            "stream": True, "stream_options": {"include_usage": True}}
    with own.client(timeout=120) as http:
        while not until.is_set():
            with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-api-key": key}) as response:
                if response.status_code != 200:
                    response.read()
                    into.append(Stream(response.status_code, response.json()["error"]["code"], 0))
                    continue
                tokens = 0
                for line in response.iter_lines():
                    if line.startswith("data: {") and '"usage":{' in line.replace(" ", ""):
                        tokens = json.loads(line[6:])["usage"]["total_tokens"]
                into.append(Stream(200, None, tokens))


class InFlight:
    """Samples, until stopped, how many requests of one user are in flight as the gateway holds them:
    the reservations in the user's month (each request in flight holds one until it is settled).
    What its readers see cannot say it: a reader may see a stream end after the next one began."""

    def __init__(self, own, user_id: str) -> None:
        from infergate.domain.periods import period_of
        from infergate.stores.usage_documents import month_id

        self.most, self._stop = 0, threading.Event()
        self._month = own.database()["usage"], month_id(user_id, period_of(datetime.now(UTC)))
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        usage, month = self._month
        while not self._stop.is_set():
            document = usage.find_one({"_id": month}, {"reservations": 1}) or {}
            self.most = max(self.most, len(document.get("reservations", ())))

    def __enter__(self) -> InFlight:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def test_a_flush_of_redis_under_load_lifts_no_concurrency_limit_and_charges_no_retry_twice(own):
    with own.client() as http:
        account, other = own.register(http), own.register(http)
        changed = http.patch(f"/admin/v1/users/{account['user_id']}", headers=own.admin(),
                             json={"overrides": {"max_concurrent_requests": 3}})
        assert changed.status_code == 200, changed.text
        retry = {"json": {"prompt": "once only", "max_tokens": 5},
                 "headers": {"x-api-key": other["api_key"], "Idempotency-Key": "flush-1"}}
        first = http.post("/v1/chat", **retry)
    stop, answers = threading.Event(), []
    threads = [threading.Thread(target=streams_of, args=(own, account["api_key"], stop, answers)) for _ in range(8)]
    with InFlight(own, account["user_id"]) as in_flight:
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: sum(a.status == 200 for a in answers) >= 6, what="streams before the flush")
            redis.Redis.from_url(own.redis.url).flushall()  # a failover to an empty replica does the same
            flushed = len(answers)
            wait_for(lambda: sum(a.status == 200 for a in answers[flushed:]) >= 12, what="streams after the flush")
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    with own.client() as http:
        again = http.post("/v1/chat", **retry)
        tokens_used = http.get("/v1/usage", headers={"x-api-key": account["api_key"]}).json()["tokens_used"]
        others = http.get("/v1/usage", headers={"x-api-key": other["api_key"]}).json()
    assert in_flight.most <= 3, "the plan allows 3 in flight, Redis's data or not"
    assert {a.code for a in answers if a.status != 200} == {"too_many_concurrent_requests"}
    assert tokens_used == sum(a.tokens for a in answers), "every stream charged what it reported, once"
    assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and others["requests"] == 1, "the retry was answered, not charged again"


def test_every_log_line_written_through_the_outages_is_json(own):
    lines = own.log_lines()
    assert lines, "the outages were logged"
    assert [line for line in lines if not line.startswith("{")] == []
    assert "Traceback" not in "\n".join(line for line in lines if not line.startswith("{"))
