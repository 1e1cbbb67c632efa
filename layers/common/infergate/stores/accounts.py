"""Users, their API keys, operators' admin keys and the audit log in MongoDB; the accounts
version in Redis.

Changes that must hold together run in one transaction: a user and their first key; the
count of a user's working keys and a new one (a write to the user makes concurrent
additions conflict, so the count holds); a rotation and its successor; an operator's
change (an admin key's too) and its audit entry. None of this is on a chat's path.
"""

# Longer than 300 lines: one store behind one port (domain/accounts.py's AccountStore), whose
# transactions share their helpers; split, each half would hold half a transaction's rules.

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import redis
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.domain.accounts import AdminKeyRecord, ApiKeyRecord, Audit, AuditEntry, AuditFilter, Rotation, UserRecord
from infergate.domain.errors import EmailAlreadyRegistered
from infergate.domain.periods import utc_now
from infergate.observability import logger
from infergate.stores.mongo import (
    ADMIN_KEYS,
    API_KEYS,
    AUDIT_LOG,
    TEAMS,
    USERS,
    quotas_of,
    set_or_unset,
    stored,
    unavailable_when_unreachable,
)
from infergate.stores.teams import TeamRecords

ACCOUNTS_VERSION = "accounts:version"  # under the key prefix
T = TypeVar("T")


class MongoAccountStore(TeamRecords):
    def __init__(self, database: Database) -> None:
        self._client = database.client
        self._users = database[USERS]
        self._teams = database[TEAMS]
        self._keys = database[API_KEYS]
        self._admin_keys = database[ADMIN_KEYS]
        self._audit = database[AUDIT_LOG]

    def _transaction(self, work: Callable[[ClientSession], T]) -> T:
        with self._client.start_session() as session:
            return session.with_transaction(work)

    @unavailable_when_unreachable
    def create(self, user: UserRecord, key: ApiKeyRecord, *, audit: Audit | None = None) -> None:
        def insert_both(session: ClientSession) -> None:
            document = _user_document(user)
            self._users.insert_one(document, session=session)
            self._keys.insert_one(_key_document(key), session=session)
            if audit is not None:
                self._record(session, audit, {"type": "user", "id": user.user_id}, None, _shown_user(document))

        try:
            self._transaction(insert_both)
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
        return _key_record(found), user_record(found["user"][0])

    @unavailable_when_unreachable
    def find_user(self, user_id: str) -> UserRecord | None:
        document = self._users.find_one({"_id": user_id})
        return user_record(document) if document else None

    @unavailable_when_unreachable
    def find_user_by_identity(self, identity: str) -> UserRecord | None:
        document = self._users.find_one({"identity": identity})
        return user_record(document) if document else None

    @unavailable_when_unreachable
    def create_identity_user(self, user: UserRecord) -> UserRecord:
        try:
            self._users.insert_one(_user_document(user))
            return user
        except DuplicateKeyError as error:
            if "identity" in (error.details or {}).get("keyPattern", {}):
                return self.find_user_by_identity(user.identity)  # a concurrent first request made it
            # The address is another account's: this one is the identity's own, without it.
            return self.create_identity_user(UserRecord(**{**asdict(user), "email": None}))

    @unavailable_when_unreachable
    def search_users(self, *, email: str | None, plan: str | None, limit: int, after: str | None) -> list[UserRecord]:
        query: dict[str, Any] = {}
        if email:
            query["email"] = {"$regex": "^" + re.escape(email.lower())}
        if plan:
            query["plan"] = plan
        if after:
            query["_id"] = {"$gt": after}
        return [user_record(document) for document in self._users.find(query).sort("_id", 1).limit(limit)]

    @unavailable_when_unreachable
    def keys_of(self, user_id: str) -> list[ApiKeyRecord]:
        return [_key_record(document) for document in self._keys.find({"user_id": user_id})]

    @unavailable_when_unreachable
    def add_key(self, key: ApiKeyRecord, *, max_active: int, now: datetime) -> bool:
        def add(session: ClientSession) -> bool:
            # Written first, so that two additions for one user conflict and one runs again.
            self._users.update_one({"_id": key.user_id}, {"$inc": {"key_changes": 1}}, session=session)
            if self._keys.count_documents(_working(key.user_id, now), session=session) >= max_active:
                return False
            self._keys.insert_one(_key_document(key), session=session)
            return True

        return self._transaction(add)

    @unavailable_when_unreachable
    def rotate_key(self, key_id: str, user_id: str, successor: ApiKeyRecord, *, grace_until: datetime,
                   now: datetime, max_working: int | None = None) -> Rotation:
        def rotate(session: ClientSession) -> Rotation:
            self._users.update_one({"_id": user_id}, {"$inc": {"key_changes": 1}}, session=session)
            working = self._keys.count_documents(_working(user_id, now), session=session)
            if max_working is not None and grace_until > now and working >= max_working:
                return Rotation.TOO_MANY_KEYS
            replaced = self._keys.find_one_and_update(
                {**_active(user_id, now), "_id": key_id},
                {"$set": {"grace_until": grace_until, "successor_id": successor.key_id, "rotated_at": now}},
                session=session,
            )
            if replaced is None:
                exists = self._keys.count_documents({"_id": key_id, "user_id": user_id}, session=session)
                return Rotation.NOT_ACTIVE if exists else Rotation.NOT_FOUND
            self._keys.insert_one(_key_document(successor), session=session)
            return Rotation.ROTATED

        return self._transaction(rotate)

    @unavailable_when_unreachable
    def change_key(self, key_id: str, changes: Mapping[str, Any], *, audit: Audit) -> ApiKeyRecord | None:
        def own_line(session: ClientSession) -> None:
            # A key given limits of its own spends its own months, unless it already shares its line's.
            limited = {"$or": [{"monthly_budget_micros": {"$exists": True}}, {"model_quotas": {"$exists": True}}]}
            self._keys.update_one({"_id": key_id, "budget_id": {"$exists": False}, **limited},
                                  {"$set": {"budget_id": key_id}}, session=session)

        changed = self._change_audited(self._keys, {"type": "key", "id": key_id}, set_or_unset(changes, stored),
                                       audit, shown=_shown_key, then=own_line)
        return _key_record(changed) if changed else None

    @unavailable_when_unreachable
    def revoke_key(self, key_id: str, *, user_id: str | None, now: datetime,
                   audit: Audit | None = None) -> ApiKeyRecord | None:
        owned = {"_id": key_id} if user_id is None else {"_id": key_id, "user_id": user_id}

        def revoke(session: ClientSession) -> dict | None:
            before = self._keys.find_one_and_update(
                {**owned, "revoked_at": None}, {"$set": {"revoked_at": now}}, session=session)
            if before is None:
                return self._keys.find_one(owned, session=session)  # revoked already, or no such key
            after = {**before, "revoked_at": now}
            if audit is not None:
                self._record(session, audit, {"type": "key", "id": key_id}, _shown_key(before), _shown_key(after))
            return after

        revoked = self._transaction(revoke)
        return _key_record(revoked) if revoked else None

    @unavailable_when_unreachable
    def change_user(self, user_id: str, changes: Mapping[str, Any], *, audit: Audit) -> UserRecord | None:
        return self._change_user(user_id, {"$set": dict(changes)}, audit)

    @unavailable_when_unreachable
    def grant(self, user_id: str, period: str, tokens: int, *, audit: Audit) -> UserRecord | None:
        return self._change_user(user_id, {"$inc": {f"grants.{period}": tokens}}, audit)

    def _change_user(self, user_id: str, update: dict, audit: Audit) -> UserRecord | None:
        document = self._change_audited(self._users, {"type": "user", "id": user_id}, update, audit, shown=_shown_user)
        return user_record(document) if document else None

    def _change_audited(self, collection: Collection, subject: dict, update: dict, audit: Audit, *,
                        shown: Callable[[dict], dict] = lambda document: document,
                        then: Callable[[ClientSession], None] | None = None) -> dict | None:
        """Apply `update` to the document `subject` names (and `then`, in the same transaction), and
        audit it as `shown` before and after: the document as it is now, or None if there is none."""
        def change(session: ClientSession) -> dict | None:
            before = collection.find_one_and_update({"_id": subject["id"]}, update, session=session,
                                                    return_document=ReturnDocument.BEFORE)
            if before is None:
                return None
            if then is not None:
                then(session)
            after = collection.find_one({"_id": subject["id"]}, session=session)
            self._record(session, audit, subject, shown(before), shown(after))
            return after

        return self._transaction(change)

    def _record(self, session: ClientSession, audit: Audit, subject: dict, before: dict | None, after: dict | None) -> None:
        self._audit.insert_one({
            "_id": _audit_id(), "actor": audit.actor, "at": utc_now(), "action": audit.action, "subject": subject,
            "before": before, "after": after,
        }, session=session)

    @unavailable_when_unreachable
    def add_admin_key(self, key: AdminKeyRecord, *, audit: Audit) -> None:
        document = {"_id": key.key_id, "key_hash": key.key_hash, "name": key.name, "role": key.role,
                    "created_at": key.created_at, "revoked_at": key.revoked_at}

        def add(session: ClientSession) -> None:
            self._admin_keys.insert_one(document, session=session)
            self._record(session, audit, {"type": "admin_key", "id": key.key_id}, None, _shown_admin_key(document))

        self._transaction(add)

    @unavailable_when_unreachable
    def find_admin_key(self, key_hash: str) -> AdminKeyRecord | None:
        document = self._admin_keys.find_one({"key_hash": key_hash})
        return None if document is None else _admin_key_record(document)

    @unavailable_when_unreachable
    def admin_keys(self) -> list[AdminKeyRecord]:
        return [_admin_key_record(document) for document in self._admin_keys.find().sort("created_at", ASCENDING)]

    @unavailable_when_unreachable
    def revoke_admin_key(self, key_id: str, *, now: datetime, audit: Audit) -> AdminKeyRecord | None:
        def revoke(session: ClientSession) -> dict | None:
            before = self._admin_keys.find_one_and_update({"_id": key_id, "revoked_at": None},
                                                          {"$set": {"revoked_at": now}}, session=session)
            if before is None:
                return self._admin_keys.find_one({"_id": key_id}, session=session)
            after = {**before, "revoked_at": now}
            self._record(session, audit, {"type": "admin_key", "id": key_id}, _shown_admin_key(before),
                         _shown_admin_key(after))
            return after

        revoked = self._transaction(revoke)
        return _admin_key_record(revoked) if revoked else None

    @unavailable_when_unreachable
    def audit_log(self, *, limit: int, before: str | None, only: AuditFilter = AuditFilter()) -> list[AuditEntry]:
        query: dict = {"_id": {"$lt": before}} if before else {}
        if only.actor:
            query["actor"] = {"$regex": re.escape(only.actor)}
        if only.subject:
            query["subject.id"] = only.subject
        if only.action:
            query["action"] = only.action
        return [AuditEntry(entry_id=document["_id"], actor=document["actor"], at=document["at"],
                           action=document["action"], subject=document["subject"], before=document.get("before"),
                           after=document.get("after"))
                for document in self._audit.find(query).sort("_id", DESCENDING).limit(limit)]


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


def _admin_key_record(document: dict) -> AdminKeyRecord:
    return AdminKeyRecord(key_id=document["_id"], key_hash=document["key_hash"], name=document["name"],
                          role=document["role"], created_at=document["created_at"],
                          revoked_at=document.get("revoked_at"))


def _shown_admin_key(document: dict) -> dict:
    """An admin key as the audit log shows it: never its hash."""
    return {name: document.get(name) for name in ("name", "role", "created_at", "revoked_at")}


def _working(user_id: str, now: datetime) -> dict:
    """A user's keys that still work at `now`: active ones, and replaced ones within their grace."""
    return {"user_id": user_id, "revoked_at": None,
            "$and": [{"$or": [{"grace_until": None}, {"grace_until": {"$gt": now}}]},
                     {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}]}


def _active(user_id: str, now: datetime) -> dict:
    """A user's keys that are neither revoked, nor replaced, nor expired at `now`."""
    return {"user_id": user_id, "revoked_at": None, "grace_until": None,
            "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


def _audit_id() -> str:
    """Ordered by time, so the newest entries come first when sorted."""
    return f"aud_{time.time_ns() // 1000:016d}{secrets.token_hex(4)}"


def _user_document(user: UserRecord) -> dict:
    document = {"_id": user.user_id, "plan": user.plan, "status": user.status, "overrides": dict(user.overrides),
                "grants": dict(user.grants), "created_at": user.created_at}
    if user.email is not None:
        document["email"] = user.email
    if user.identity is not None:
        document["identity"] = user.identity
    if user.team_id is not None:
        document["team_id"] = user.team_id
    if user.kind != "person":
        document |= {"kind": user.kind, "name": user.name}
    return document


def user_record(document: dict) -> UserRecord:
    return UserRecord(
        user_id=document["_id"], email=document.get("email"), plan=document["plan"], created_at=document["created_at"],
        status=document.get("status", "active"), overrides=document.get("overrides") or {},
        grants=document.get("grants") or {}, identity=document.get("identity"), team_id=document.get("team_id"),
        name=document.get("name"), kind=document.get("kind", "person"),
    )


def _shown_user(document: dict) -> dict:
    return {name: value for name, value in document.items() if name not in ("key_changes",)}


def _key_document(key: ApiKeyRecord) -> dict:
    return {"_id": key.key_id, "user_id": key.user_id, "key_hash": key.key_hash, "created_at": key.created_at,
            "name": key.name, "prefix": key.prefix, "expires_at": key.expires_at, "revoked_at": key.revoked_at,
            "grace_until": key.grace_until, "successor_id": key.successor_id,
            **({"allowed_models": list(key.allowed_models)} if key.allowed_models is not None else {}),
            **({"monthly_budget_micros": key.monthly_budget_micros} if key.monthly_budget_micros is not None else {}),
            **({"model_quotas": stored(key.model_quotas)} if key.model_quotas else {}),
            **({"budget_id": key.budget_id} if key.budget_id is not None else {})}


def _key_record(document: dict) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=document["_id"], user_id=document["user_id"], key_hash=document["key_hash"],
        created_at=document["created_at"], name=document.get("name"), prefix=document.get("prefix", ""),
        expires_at=document.get("expires_at"), revoked_at=document.get("revoked_at"),
        grace_until=document.get("grace_until"), successor_id=document.get("successor_id"),
        allowed_models=tuple(document["allowed_models"]) if document.get("allowed_models") is not None else None,
        monthly_budget_micros=document.get("monthly_budget_micros"), model_quotas=quotas_of(document),
        budget_id=document.get("budget_id"),
    )


def _shown_key(document: dict) -> dict:
    """A key as the audit log keeps it: never its hash."""
    return {name: value for name, value in document.items() if name != "key_hash"}
