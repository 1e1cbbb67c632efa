"""Powertools Idempotency's records in MongoDB, beside the ledger they keep from charging twice.

A record lives as long as what it protects: were it kept in Redis, a failover to an empty
replica or a flush would forget that a request was answered and charged, and its retry would
be charged again. In MongoDB it survives what the charge survives.

One document per key (`_id`, Powertools' hashed key). Taking a key is one upsert whose filter
matches only a record that may be replaced (expired, or in progress past its function's
time): where a live record exists the upsert's insert collides with its `_id`, and that
collision is the answer "already exists", decided by the server for any number of
instances. A TTL index removes records once they expire; a record read after its expiry is
treated as absent whatever the TTL monitor's delay.
"""

from __future__ import annotations

from datetime import UTC, datetime
from time import time

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.stores.mongo import IDEMPOTENCY, unavailable_when_unreachable


class MongoIdempotencyStore(BasePersistenceLayer):
    def __init__(self, database: Database) -> None:
        super().__init__()
        self._records = database[IDEMPOTENCY]

    @unavailable_when_unreachable
    def _get_record(self, idempotency_key: str) -> DataRecord:
        found = self._records.find_one({"_id": idempotency_key, "expiration": {"$gt": int(time())}})
        if found is None:
            raise IdempotencyItemNotFoundError
        return DataRecord(idempotency_key=idempotency_key, status=found["status"], expiry_timestamp=found["expiration"],
                          in_progress_expiry_timestamp=found.get("in_progress_expiration"),
                          response_data=found.get("data"), payload_hash=found.get("validation"))

    @unavailable_when_unreachable
    def _put_record(self, data_record: DataRecord) -> None:
        now = time()
        replaceable = {"$or": [
            {"expiration": {"$lte": int(now)}},
            # A first attempt whose function ran out of time: its retry may take the key.
            {"status": "INPROGRESS", "in_progress_expiration": {"$lt": int(now * 1000)}},
        ]}
        try:
            self._records.update_one({"_id": data_record.idempotency_key, **replaceable},
                                     {"$set": self._document(data_record)}, upsert=True)
        except DuplicateKeyError:
            raise IdempotencyItemAlreadyExistsError from None

    @unavailable_when_unreachable
    def _update_record(self, data_record: DataRecord) -> None:
        # Powertools hands a completed record without its payload hash: the one stored is kept.
        self._records.update_one({"_id": data_record.idempotency_key}, {"$set": {
            "status": data_record.status, "expiration": data_record.expiry_timestamp, "data": data_record.response_data,
            "expires_at": _instant(data_record.expiry_timestamp)}})

    @unavailable_when_unreachable
    def _delete_record(self, data_record: DataRecord) -> None:
        self._records.delete_one({"_id": data_record.idempotency_key})

    def _document(self, data_record: DataRecord) -> dict:
        return {"status": data_record.status, "expiration": data_record.expiry_timestamp,
                "in_progress_expiration": data_record.in_progress_expiry_timestamp,
                "validation": data_record.payload_hash, "data": data_record.response_data,
                "expires_at": _instant(data_record.expiry_timestamp)}


def _instant(epoch_seconds: int | None) -> datetime:
    """When the TTL index may remove the record."""
    return datetime.fromtimestamp(epoch_seconds or time(), UTC)
