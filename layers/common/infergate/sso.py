"""Single sign-on: tokens (JWTs) from the organisation's identity provider, checked against the
keys it publishes (JWT_JWKS_URL).

A token is accepted only if it is signed with an asymmetric algorithm by a key
the provider publishes (found by the token's `kid`), and its `iss`, `aud`,
`exp` and `nbf` hold. `alg: none` and HMAC are refused outright, so a public
key can never be used as an HMAC secret. The published keys are kept for
JWKS_SECONDS; a token naming a key not among them makes one fetch, at most
every REFETCH_SECONDS, so rotated keys are picked up and random `kid`s cannot
make the gateway hammer the provider.

PyJWT and cryptography are imported on first use: functions that never see a
token do not pay for them at cold start.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from infergate.domain.authentication import Claims, TokenRefused
from infergate.domain.errors import ServiceUnavailable
from infergate.observability import logger

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
JWKS_SECONDS = 300.0
REFETCH_SECONDS = 10.0
LEEWAY_SECONDS = 30


class JwtVerifier:
    def __init__(self, *, issuer: str, audience: str, jwks_url: str, plan_claim: str) -> None:
        self._issuer, self._audience, self._jwks_url, self._plan_claim = issuer, audience, jwks_url, plan_claim
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def verify(self, token: str) -> Claims:
        """The token's claims, or TokenRefused saying why not."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("invalid_token", "The token is not a JWT.") from None
        if header.get("alg") not in ALGORITHMS:
            raise TokenRefused("invalid_token", f"Tokens must be signed with one of {', '.join(ALGORITHMS)}.")
        key = self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self._audience, issuer=self._issuer,
                                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token_expired", "The token has expired; get a new one from your identity provider.") from None
        except jwt.PyJWTError as error:
            raise TokenRefused("invalid_token", f"The token is not valid here: {_reason(error)}.") from None
        plan = claims.get(self._plan_claim)
        return Claims(issuer=claims["iss"], subject=str(claims["sub"]), email=_email(claims.get("email")),
                      plan=plan if isinstance(plan, str) else None)

    def _key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > JWKS_SECONDS
            unknown = kid not in self._keys and time.monotonic() - self._fetched_at > REFETCH_SECONDS
            if stale or unknown:
                self._keys = self._fetch()
                self._fetched_at = time.monotonic()
            if kid not in self._keys:
                raise TokenRefused("invalid_token", "The token is signed with a key the identity provider does not publish.")
            return self._keys[kid]

    def _fetch(self) -> dict[str, Any]:
        from jwt import PyJWKSet
        from jwt.exceptions import PyJWKSetError

        try:
            with urllib.request.urlopen(self._jwks_url, timeout=3) as response:
                published = PyJWKSet.from_dict(json.loads(response.read()))
        except (OSError, ValueError, PyJWKSetError) as error:
            logger.error("the identity provider's keys could not be fetched", extra={"error": type(error).__name__})
            if self._keys:
                return self._keys  # keep using what it published last
            raise ServiceUnavailable("Sign-in tokens cannot be checked right now; retry shortly.", retry_after=1) from None
        return {key.key_id: key.key for key in published.keys if key.key_id}


def _email(claimed: Any) -> str | None:
    """The token's email claim as registration would take it (one spelling per mailbox, nothing
    invisible, one script a part), or none: a sign-in is not refused for an address it cannot keep."""
    from infergate.schemas.accounts import normalised_email

    if not isinstance(claimed, str) or len(claimed) > 254:
        return None
    try:
        return normalised_email(claimed)
    except ValueError:
        logger.warning("a sign-in token's email claim is not an address registration would take; none is kept")
        return None


def _reason(error: Exception) -> str:
    import jwt

    return {
        jwt.InvalidAudienceError: "it is meant for another audience",
        jwt.InvalidIssuerError: "another issuer made it",
        jwt.ImmatureSignatureError: "it is not valid yet",
        jwt.InvalidSignatureError: "its signature does not match",
        jwt.MissingRequiredClaimError: "a required claim is missing",
        jwt.InvalidAlgorithmError: "its algorithm is not allowed",
    }.get(type(error), "it could not be verified")
