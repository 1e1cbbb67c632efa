"""Recognising credentials: a user's API key (`igk_…`), an operator's admin key (`iga_…`),
or, where single sign-on is configured, a token from the organisation's identity provider
(its holder becomes a user on their first request).

The warm path reads nothing: what the store said of a key seen lately is
answered from memory (a known key for REMEMBER_SECONDS, an unknown one for
UNKNOWN_KEY_SECONDS). Every change to a key or a user advances the accounts
version; the authenticator reads it at most every VERSION_CHECK_SECONDS and
forgets everything when it has moved, or when it cannot be read. What it
remembers are the stored records, so expiry and grace periods are judged
afresh on every request.

Every refused credential is counted against the address it came from
(FailedAuthentications). An address with too many lately has its
credentials refused, with a Retry-After, before the store is asked; a key
already known is still answered from memory. So guessing keys costs the
database nothing, and the warm path still reads nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from infergate.domain import keys
from infergate.domain.accounts import AccountStore, AccountsVersion, UserRecord
from infergate.domain.model_server import CutOff
from infergate.domain.periods import utc_now
from infergate.domain.plans import PlanCatalog
from infergate.domain.principal import Operator, Principal, principal_of
from infergate.domain.teams import Team

log = logging.getLogger(__name__)

REMEMBER_SECONDS = 60.0
UNKNOWN_KEY_SECONDS = 5.0
# How often a streaming answer asks whether its caller was suspended or its key revoked meanwhile.
WATCH_SECONDS = 2.0
_UNREAD = object()  # a stream's accounts version before it has read one
# A change (a revoked key, a new plan, a suspension) reaches every instance within this.
VERSION_CHECK_SECONDS = 0.5
REMEMBERED_KEYS = 4096


@dataclass(frozen=True)
class Claims:
    """What a verified sign-in token says of its holder."""

    issuer: str
    subject: str
    email: str | None
    plan: str | None  # the plan a configurable claim names, if any


class TokenRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Claims:
        """The token's claims, or TokenRefused (code invalid_token or token_expired)."""


class FailedAuthentications(Protocol):
    """Credentials refused lately, by the address they came from."""

    def blocked_for_ms(self, source: str) -> int:
        """How long `source` must wait before its credentials are looked up again; 0 if it
        need not (or if it cannot be told)."""

    def add(self, source: str) -> None:
        """Count one refused credential of `source`'s."""


@dataclass(frozen=True)
class Refusal:
    code: str  # missing_api_key, invalid_api_key, api_key_expired, invalid_token, token_expired, too_many_failed_authentications
    message: str
    retry_after: int = 0  # seconds, for a refusal that is a matter of time


INVALID_KEY = Refusal("invalid_api_key", "The API key is not valid.")
EXPIRED_KEY = Refusal("api_key_expired", "The API key has expired; use its successor or create a new key.")


@dataclass(frozen=True)
class _Remembered:
    found: Any  # what the store said: records, or None for an unknown credential
    until: float


class Authenticator:
    def __init__(self, store: AccountStore, plans: PlanCatalog, version: AccountsVersion, *,
                 tokens: TokenVerifier | None = None, failures: FailedAuthentications | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now,
                 capacity: int = REMEMBERED_KEYS, claimable: frozenset[str] = frozenset()) -> None:
        """`claimable`: the plans a sign-in token may claim (JWT_ALLOWED_PLANS); the default plan always."""
        self._store, self._plans, self._version, self._tokens = store, plans, version, tokens
        self._claimable = claimable | {plans.default.name}
        self._failures = failures
        self._clock, self._now = clock, now
        self._capacity = capacity
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()
        self._seen_version: int | None = None
        self._next_check = float("-inf")
        self._lock = threading.Lock()

    def authenticate(self, credential: str | None, *, source: str = "") -> Principal | Operator | Refusal:
        """Who `credential` belongs to, or why it is refused; `source` is the address it came from.
        A valid key or token is never refused for its address: an address that failed too often
        gets 429 for its refused credentials only, whatever their kind."""
        found = self._identify(credential, source)
        return self.refuse(found, source=source) if isinstance(found, Refusal) else found

    def watch(self, principal: Principal, *, every: float = WATCH_SECONDS) -> Callable[[], CutOff | None]:
        """What a stream asks between its pieces: why its caller may no longer be answered (the
        account suspended, the key revoked or expired), or None. Nothing is read in the first
        `every` seconds (a short answer costs no round trip); then the account once, and after that
        the accounts version every `every` seconds, the account again only when the version moved."""
        seen: int | None | object = _UNREAD
        next_at = self._clock() + every

        def ended() -> CutOff | None:
            nonlocal seen, next_at
            now = self._clock()
            if now < next_at:
                return None
            next_at = now + every
            version = self._version.read()
            if version is not None and version == seen:
                return None
            seen = version
            return self._withdrawn(principal)

        return ended

    def _withdrawn(self, principal: Principal) -> CutOff | None:
        user = self._store.find_user(principal.user_id)
        if user is None or user.status == "suspended":
            return CutOff("account_suspended", "The account was suspended while the answer streamed.")
        if principal.key_id.startswith("sso_"):
            return None
        key = next((key for key in self._store.keys_of(principal.user_id) if key.key_id == principal.key_id), None)
        status = key.status(self._now()) if key is not None else "revoked"
        if status == "revoked":
            return CutOff("invalid_api_key", "The API key was revoked while the answer streamed.")
        if status == "expired":
            return CutOff("api_key_expired", "The API key expired while the answer streamed.")
        return None

    def refuse(self, refusal: Refusal, *, source: str = "") -> Refusal:
        """A refused credential (or one refused before it was looked at: missing, or of an unknown
        scheme), counted against `source`; too_many_failed_authentications once it has failed too often."""
        if self._failures is None or not source:
            return refusal
        blocked_ms = self._failures.blocked_for_ms(source)
        self._failures.add(source)
        if blocked_ms <= 0:
            return refusal
        retry_after = max(1, -(-blocked_ms // 1000))
        return Refusal("too_many_failed_authentications",
                       f"Too many failed authentications from your address; retry in {retry_after} s.",
                       retry_after=retry_after)

    def _identify(self, credential: str | None, source: str) -> Principal | Operator | Refusal:
        if credential and keys.is_well_formed(credential):
            return self._user_key(credential, source)
        if credential and keys.is_well_formed(credential, keys.ADMIN_PREFIX):
            return self._admin_key(credential, source)
        if credential and self._tokens is not None and credential.count(".") == 2:
            return self._token(credential, source)
        return INVALID_KEY

    def _user_key(self, api_key: str, source: str) -> Principal | Refusal:
        found = self._recall(keys.hash_key(api_key), self._store.find_by_key_hash, source)
        if found is None:
            return INVALID_KEY
        key, user = found
        now = self._now()
        status = key.status(now)
        if status == "revoked":
            return INVALID_KEY
        if status == "expired":
            return EXPIRED_KEY
        return principal_of(key.key_id, user, self._plans, now=now, team=self._team_of(user, source), key=key)

    def _token(self, token: str, source: str) -> Principal | Refusal:
        try:
            claims = self._tokens.verify(token)  # type: ignore[union-attr]
        except TokenRefused as refused:
            return Refusal(refused.code, refused.message)
        now = self._now()
        identity = f"sso:{claims.issuer} {claims.subject}"
        user = self._recall(identity, lambda _: identity_user(claims, plans=self._plans, store=self._store, now=now,
                                                              claimable=self._claimable),
                            source)
        # Keys are per credential; a user of sign-in has one: the sign-in.
        return principal_of(f"sso_{user.user_id.removeprefix('usr_')}", user, self._plans, now=now,
                            team=self._team_of(user, source))

    def _team_of(self, user: UserRecord, source: str) -> Team | None:
        """The user's team, remembered as users are: a change to it holds within a second."""
        if user.team_id is None:
            return None
        return self._recall(f"team:{user.team_id}", lambda _: self._store.find_team(user.team_id), source)

    def _admin_key(self, api_key: str, source: str) -> Operator | Refusal:
        key_hash = keys.hash_key(api_key)
        found = self._recall("admin:" + key_hash, lambda _: self._store.find_admin_key(key_hash), source)
        if found is None or found.revoked_at is not None:
            return INVALID_KEY
        return Operator(key_id=found.key_id, name=found.name, role=found.role)

    def _recall(self, name: str, read: Callable[[str], Any], source: str) -> Any:
        """What the store says of `name`, from memory when it was read lately (an unknown name is
        remembered too, for a while, so that repeated guesses cost no read)."""
        now = self._clock()
        with self._lock:
            self._forget_if_changed(now)
            remembered = self._remembered.get(name)
            if remembered is not None and now < remembered.until:
                self._remembered.move_to_end(name)
                return remembered.found
        found = read(name)
        with self._lock:
            lifetime = REMEMBER_SECONDS if found is not None else UNKNOWN_KEY_SECONDS
            self._remembered[name] = _Remembered(found, now + lifetime)
            self._remembered.move_to_end(name)
            while len(self._remembered) > self._capacity:
                self._remembered.popitem(last=False)
        return found

    def _forget_if_changed(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + VERSION_CHECK_SECONDS
        version = self._version.read()
        if version is None or version != self._seen_version:
            self._remembered.clear()
        self._seen_version = version


def identity_user(claims: Claims, *, plans: PlanCatalog, store: AccountStore, now: datetime,
                  claimable: frozenset[str] = frozenset()) -> UserRecord:
    """The user a verified sign-in token stands for, made on their first request with the plan
    the token names if a token may claim it (`claimable`), else the default plan: a plan claim
    is the identity provider's word, and an operator decides which plans it may grant."""
    identity = f"{claims.issuer} {claims.subject}"
    plan = plans.get(claims.plan) if claims.plan in claimable else None
    if claims.plan and plan is None:
        log.warning("a sign-in token claimed a plan it may not; the default plan is given",
                    extra={"claimed_plan": claims.plan[:64]})
    return store.find_user_by_identity(identity) or store.create_identity_user(UserRecord(
        user_id=keys.new_id("usr"), email=claims.email, plan=(plan or plans.default).name, created_at=now,
        identity=identity,
    ))
