"""Users and their API keys in MongoDB, and the accounts version in Redis."""

from __future__ import annotations

import redis
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.domain.ports import ApiKeyRecord, UserRecord
from infergate.errors import EmailAlreadyRegistered
from infergate.observability import logger
from infergate.stores.mongo import API_KEYS, USERS, unavailable_when_unreachable

ACCOUNTS_VERSION = "accounts:version"  # under the key prefix


class MongoAccountStore:
    def __init__(self, database: Database) -> None:
        self._client = database.client
        self._users = database[USERS]
        self._keys = database[API_KEYS]

    @unavailable_when_unreachable
    def create(self, user: UserRecord, key: ApiKeyRecord) -> None:
        def insert_both(session) -> None:
            self._users.insert_one(_user_document(user), session=session)
            self._keys.insert_one(_key_document(key), session=session)

        try:
            with self._client.start_session() as session:
                session.with_transaction(insert_both)
        except DuplicateKeyError as error:
            if "email" in (error.details or {}).get("keyPattern", {}):
                raise EmailAlreadyRegistered(f"{user.email} is already registered.") from None
            raise

    @unavailable_when_unreachable
    def find_by_key_hash(self, key_hash: str) -> tuple[ApiKeyRecord, UserRecord] | None:
        # One round trip: the key and its owner together.
        found = next(
            self._keys.aggregate([
                {"$match": {"key_hash": key_hash}},
                {"$limit": 1},
                {"$lookup": {"from": USERS, "localField": "user_id", "foreignField": "_id", "as": "user"}},
            ]),
            None,
        )
        if found is None or not found["user"]:
            return None
        return _key_record(found), _user_record(found["user"][0])

    @unavailable_when_unreachable
    def set_key_status(self, key_id: str, status: str) -> bool:
        return self._keys.update_one({"_id": key_id}, {"$set": {"status": status}}).matched_count == 1

    @unavailable_when_unreachable
    def delete_key(self, key_id: str) -> bool:
        return self._keys.delete_one({"_id": key_id}).deleted_count == 1

    @unavailable_when_unreachable
    def set_plan(self, user_id: str, plan: str) -> bool:
        return self._users.update_one({"_id": user_id}, {"$set": {"plan": plan}}).matched_count == 1


class RedisAccountsVersion:
    """A counter in Redis that every change to a key or a user advances."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._key = prefix + ACCOUNTS_VERSION

    def read(self) -> int | None:
        try:
            return int(self._client.get(self._key) or 0)
        except redis.RedisError:
            return None

    def advance(self) -> None:
        try:
            self._client.incr(self._key)
        except redis.RedisError:
            # Instances that cannot read the version forget what they cached anyway; those
            # that can, but read it before this failure, keep the old state until it expires.
            logger.error("accounts version not advanced: Redis unavailable; the change applies as caches expire")


def _user_document(user: UserRecord) -> dict:
    return {"_id": user.user_id, "email": user.email, "plan": user.plan, "created_at": user.created_at}


def _user_record(document: dict) -> UserRecord:
    return UserRecord(
        user_id=document["_id"], email=document["email"], plan=document["plan"], created_at=document["created_at"]
    )


def _key_document(key: ApiKeyRecord) -> dict:
    return {"_id": key.key_id, "user_id": key.user_id, "key_hash": key.key_hash, "created_at": key.created_at,
            "status": key.status}


def _key_record(document: dict) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=document["_id"], user_id=document["user_id"], key_hash=document["key_hash"],
        created_at=document["created_at"], status=document.get("status", "active"),
    )
