"""Idempotency-Key records in MongoDB: one holder per key across instances, a completed record
kept until it expires, and a first attempt that ran out of time giving its key up."""

from __future__ import annotations

import time
import uuid

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)

from infergate.stores.idempotency_store import MongoIdempotencyStore
from tests.support.concurrency import at_once
from tests.support.waiting import wait_for


def store_of(database, *, expires_after_seconds: int = 3600) -> MongoIdempotencyStore:
    store = MongoIdempotencyStore(database)
    store.configure(IdempotencyConfig(event_key_jmespath="key", payload_validation_jmespath="body",
                                      expires_after_seconds=expires_after_seconds), key_prefix="idempotency")
    return store


def request() -> dict:
    return {"key": uuid.uuid4().hex, "body": {"prompt": "hi"}}


def test_one_instance_takes_a_key_and_the_others_find_it_taken(database):
    data = request()

    def take() -> bool:
        try:
            store_of(database).save_inprogress(data=data, remaining_time_in_millis=60_000)
        except IdempotencyItemAlreadyExistsError:
            return False
        return True

    assert sorted(at_once(8, take)) == [False] * 7 + [True]


def test_a_completed_record_keeps_its_answer_and_its_body_check(database):
    data, store = request(), store_of(database)
    store.save_inprogress(data=data, remaining_time_in_millis=60_000)
    store.save_success(data=data, result={"status": 200})
    with pytest.raises(IdempotencyItemAlreadyExistsError):
        store_of(database).save_inprogress(data=data, remaining_time_in_millis=60_000)
    found = store_of(database).get_record(data=data)
    assert found.status == "COMPLETED" and found.response_json_as_dict() == {"status": 200}
    assert found.payload_hash, "the body's hash is kept on completion"


def test_a_first_attempt_that_ran_out_of_time_gives_its_key_up(database):
    data = request()
    store_of(database).save_inprogress(data=data, remaining_time_in_millis=0)  # its function's time is up
    store_of(database).save_inprogress(data=data, remaining_time_in_millis=60_000)  # the retry takes the key


def test_an_expired_record_is_absent_and_its_key_free(database):
    data, store = request(), store_of(database, expires_after_seconds=1)
    store.save_inprogress(data=data, remaining_time_in_millis=60_000)
    store.save_success(data=data, result={"status": 200})
    expiration = database["idempotency"].find_one()["expiration"]  # whole seconds
    wait_for(lambda: int(time.time()) > expiration, timeout=30, what="the record's expiry to pass")
    with pytest.raises(IdempotencyItemNotFoundError):
        store_of(database).get_record(data=data)
    store_of(database).save_inprogress(data=data, remaining_time_in_millis=60_000)


def test_a_freed_key_may_be_taken_again(database):
    data, store = request(), store_of(database)
    store.save_inprogress(data=data, remaining_time_in_millis=60_000)
    store.delete_record(data=data, exception=RuntimeError("cut off"))
    store_of(database).save_inprogress(data=data, remaining_time_in_millis=60_000)
