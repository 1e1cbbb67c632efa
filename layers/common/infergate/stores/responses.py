"""Kept responses in MongoDB: one document per response, its owner's id on it, removed by a TTL
index once its retention ends (and never read after it, whatever the TTL monitor's delay)."""

from __future__ import annotations

from datetime import datetime

from pymongo.database import Database

from infergate.domain.kept_responses import KeptResponse
from infergate.stores.mongo import RESPONSES, unavailable_when_unreachable


class MongoKeptResponses:
    def __init__(self, database: Database) -> None:
        self._collection = database[RESPONSES]

    @unavailable_when_unreachable
    def keep(self, kept: KeptResponse) -> None:
        self._collection.insert_one({
            "_id": kept.id, "user_id": kept.user_id, "created_at": kept.created_at, "expires_at": kept.expires_at,
            "context": list(kept.context), "input": list(kept.input), "response": dict(kept.response)})

    @unavailable_when_unreachable
    def find(self, user_id: str, response_id: str, *, now: datetime) -> KeptResponse | None:
        found = self._collection.find_one({"_id": response_id, "user_id": user_id, "expires_at": {"$gt": now}})
        if found is None:
            return None
        return KeptResponse(found["_id"], found["user_id"], found["created_at"], found["expires_at"],
                            found["context"], found["input"], found["response"])

    @unavailable_when_unreachable
    def forget(self, user_id: str, response_id: str) -> bool:
        return self._collection.delete_one({"_id": response_id, "user_id": user_id}).deleted_count == 1
