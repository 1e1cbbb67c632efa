"""Powertools Idempotency's Redis persistence, keeping the payload check on completed records.

Powertools' cache layer (3.37) rewrites a record on completion with its
status, expiry and response only, dropping the payload-validation hash it
wrote with the in-progress record. Every identical retry of a completed
request then reads an empty hash and fails validation. The TypeScript port
fixed the same bug (powertools-lambda-typescript#5705); this layer does the
same here until the Python release does.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord


class RedisIdempotencyStore(CachePersistenceLayer):
    def _update_record(self, data_record: DataRecord) -> None:
        mapping = {
            self.data_attr: data_record.response_data,
            self.status_attr: data_record.status,
            self.expiry_attr: data_record.expiry_timestamp,
        }
        if self.payload_validation_enabled:
            mapping[self.validation_key_attr] = data_record.payload_hash
        self.client.set(
            name=data_record.idempotency_key,
            value=self._json_serializer(mapping),
            ex=self._get_expiry_second(data_record.expiry_timestamp),
        )
