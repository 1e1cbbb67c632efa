"""Outages fail fast, the same way everywhere: Redis and MongoDB are hung (SIGSTOP) and resumed
(SIGCONT) under load; no request outlasts its store's bound, registration never fails open,
nothing is lost or counted twice, and every log line stays JSON."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import NamedTuple

import pytest

from infergate.stores.mongo import CALL_SECONDS
from tests.support.accounting import log_lines
from tests.support.stack import TIGHT
from tests.support.waiting import wait_for

# The most a request may take while a store is hung: its bound, and a margin for a loaded machine.
WITHIN_SECONDS = CALL_SECONDS + 3


@pytest.fixture(scope="module")
def own(gateway_of):
    """A gateway with stores of its own: they are stopped and resumed here."""
    # Limits out of the load's way: what is measured here is time and accounting.
    return gateway_of("outages", own_stores=True, **{**TIGHT, "RATE_LIMIT_RPM": "100000", "RATE_LIMIT_TPM": "100000000",
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


def test_every_log_line_written_through_the_outages_is_json(own):
    lines = own.log_lines()
    assert lines, "the outages were logged"
    assert [line for line in lines if not line.startswith("{")] == []
    assert "Traceback" not in "\n".join(line for line in lines if not line.startswith("{"))
