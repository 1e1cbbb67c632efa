"""Single sign-on against a real identity provider of the test suite's (RSA and EC keys, its JWKS
over HTTP): every check a token must pass, keys picked up when rotated, users made on first use."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from infergate.config import Settings, plan_catalog
from infergate.domain.authentication import Authenticator, Refusal, TokenRefused
from infergate.domain.errors import ServiceUnavailable
from infergate.domain.principal import Principal
from infergate.domain.registration import register
from infergate.sso import JwtVerifier
from infergate.stores.accounts import MongoAccountStore, RedisAccountsVersion
from tests.support.identity import AUDIENCE, ISSUER, IdentityProvider, SigningKey

PLANS = plan_catalog(Settings())


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records the logger `name` writes meanwhile (InferGate's loggers do not propagate to the root)."""
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append
    logging.getLogger(name).addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture
def provider():
    started = IdentityProvider().start()
    yield started
    started.stop()


def verifier(provider: IdentityProvider) -> JwtVerifier:
    return JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.jwks_url, plan_claim="infergate_plan")


def refusal(provider, token: str) -> str:
    with pytest.raises(TokenRefused) as refused:
        verifier(provider).verify(token)
    return refused.value.code


def unsigned(claims: dict, header: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_rsa_and_ec_tokens_are_accepted_with_their_claims(provider):
    rsa, ec = provider.keys
    for key in (rsa, ec):
        claims = verifier(provider).verify(provider.token("alice", key=key, email="Alice@Example.com", infergate_plan="pro"))
        assert (claims.issuer, claims.subject, claims.email, claims.plan) == (ISSUER, "alice", "alice@example.com", "pro")


@pytest.mark.parametrize(("claims", "code"), [
    ({"lifetime": -120}, "token_expired"),
    ({"nbf": 4_000_000_000}, "invalid_token"),
    ({"iss": "https://elsewhere.example/"}, "invalid_token"),
    ({"aud": "another-service"}, "invalid_token"),
    ({"sub": None}, "invalid_token"),
])
def test_every_claim_that_must_hold_is_checked(provider, claims, code):
    assert refusal(provider, provider.token(**claims)) == code


def test_a_tampered_token_is_refused(provider):
    header, payload, signature = provider.token("alice").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "exp": 4_000_000_000}).encode()).rstrip(b"=").decode()
    assert refusal(provider, f"{header}.{forged}.{signature}") == "invalid_token"


def test_alg_none_is_refused(provider):
    token = unsigned({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": 4_000_000_000},
                     {"alg": "none", "kid": provider.keys[0].kid})
    assert refusal(provider, token) == "invalid_token"


def test_hmac_with_the_public_key_as_secret_is_refused(provider):
    key = provider.keys[0]
    public = key.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "exp": 4_000_000_000}
    body = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": key.kid}).encode()).rstrip(b"=").decode() + "." + \
        base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(hmac.new(public, body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert refusal(provider, f"{body}.{signature}") == "invalid_token"


def test_a_key_the_provider_does_not_publish_is_refused(provider):
    assert refusal(provider, provider.token(key=SigningKey.rsa())) == "invalid_token"


def test_a_rotated_key_is_picked_up_and_random_kids_fetch_at_most_once_a_while(provider):
    checker = verifier(provider)
    checker.verify(provider.token())
    assert provider.fetches == 1
    new_key = provider.rotate()
    # The key set was fetched over ten seconds ago: a token naming an unknown key fetches it again.
    checker._fetched_at -= 11
    assert checker.verify(provider.token(key=new_key)).subject == "alice"
    assert provider.fetches == 2
    stranger = SigningKey.ec()
    for _ in range(20):
        with pytest.raises(TokenRefused):
            checker.verify(provider.token(key=stranger))
    assert provider.fetches == 2


def test_a_provider_that_cannot_be_reached_is_503_not_a_refusal(provider):
    checker = verifier(provider)
    token = provider.token()
    provider.stop()
    with pytest.raises(ServiceUnavailable):
        checker.verify(token)


def test_a_token_holder_becomes_a_user_on_first_use_with_the_plan_it_names(database, redis_client, provider):
    store = MongoAccountStore(database)
    keyring = Authenticator(store, PLANS, RedisAccountsVersion(redis_client, prefix="infergate:"), tokens=verifier(provider),
                            claimable=frozenset({"pro"}))
    first = keyring.authenticate(provider.token("carol", email="carol@example.com", infergate_plan="pro"))
    assert isinstance(first, Principal) and first.plan.name == "pro" and first.key_id.startswith("sso_")
    again = keyring.authenticate(provider.token("carol", key=provider.keys[1]))
    assert again.user_id == first.user_id
    user = store.find_user(first.user_id)
    assert (user.email, user.identity) == ("carol@example.com", f"{ISSUER} carol")
    assert keyring.authenticate(provider.token("dave", infergate_plan="platinum")).plan.name == PLANS.default.name
    assert isinstance(keyring.authenticate(provider.token("erin", lifetime=-120)), Refusal)


def test_an_address_another_account_holds_is_not_taken_over(database, redis_client, provider):
    store = MongoAccountStore(database)
    registered = register("frank@example.com", plan=PLANS.default, store=store, now=datetime.now(UTC))
    keyring = Authenticator(store, PLANS, RedisAccountsVersion(redis_client, prefix="infergate:"), tokens=verifier(provider))
    signed_in = keyring.authenticate(provider.token("frank", email="frank@example.com"))
    assert signed_in.user_id != registered.user.user_id
    assert store.find_user(signed_in.user_id).email is None


def test_without_single_sign_on_a_token_is_just_an_invalid_key(database, redis_client, provider):
    keyring = Authenticator(MongoAccountStore(database), PLANS, RedisAccountsVersion(redis_client, prefix="infergate:"))
    assert keyring.authenticate(provider.token()).code == "invalid_api_key"


def test_tokens_never_reach_a_log_line(provider):
    from infergate.observability import redact

    token = provider.token()
    assert token not in json.dumps(redact({"message": f"token {token} refused", "detail": token}))
    assert jwt.get_unverified_header(token)["kid"]


def test_a_token_may_claim_only_the_plans_the_operator_allows(database, redis_client, provider):
    store = MongoAccountStore(database)
    version = RedisAccountsVersion(redis_client, prefix="infergate:")
    by_default = Authenticator(store, PLANS, version, tokens=verifier(provider))
    with logged("infergate.domain.authentication") as lines:
        assert by_default.authenticate(provider.token("mallory", infergate_plan="internal")).plan.name == PLANS.default.name
    assert [(line.getMessage(), line.claimed_plan) for line in lines] == [
        ("a sign-in token claimed a plan it may not; the default plan is given", "internal")]
    assert by_default.authenticate(provider.token("oscar", infergate_plan="pro")).plan.name == PLANS.default.name
    allowed = Authenticator(store, PLANS, version, tokens=verifier(provider), claimable=frozenset({"pro"}))
    assert allowed.authenticate(provider.token("peggy", infergate_plan="pro")).plan.name == "pro"
    assert allowed.authenticate(provider.token("trent", infergate_plan="internal")).plan.name == PLANS.default.name


@pytest.mark.parametrize("claimed", ["ａｄａ@ｅｘａｍｐｌｅ.com", "z\u200bed@example.com", "@", "a" * 5000 + "@example.com",
                                     "ivan@ex\u0430mple.com"])
def test_a_sign_in_keeps_only_an_email_registration_would_take(database, redis_client, provider, claimed):
    store = MongoAccountStore(database)
    keyring = Authenticator(store, PLANS, RedisAccountsVersion(redis_client, prefix="infergate:"), tokens=verifier(provider))
    user = store.find_user(keyring.authenticate(provider.token("sybil", email=claimed)).user_id)
    # Full-width forms fold to one spelling, as registration folds them; anything else is not kept.
    assert user.email == ("ada@example.com" if claimed.startswith("ａ") else None), repr(claimed)


def test_bad_tokens_are_limited_like_bad_keys_and_a_valid_token_is_never_locked_out(database, redis_client, provider):
    from infergate.stores.authentication import RedisFailedAuthentications

    failures = RedisFailedAuthentications(redis_client, prefix=f"sso-{provider.jwks_url[-5:]}:", per_minute=3)
    keyring = Authenticator(MongoAccountStore(database), PLANS, RedisAccountsVersion(redis_client, prefix="infergate:"),
                            tokens=verifier(provider), failures=failures)
    source = "203.0.113.9"
    forged = provider.token("eve", lifetime=-3600)
    codes = [keyring.authenticate(forged, source=source).code for _ in range(6)]
    assert codes[:3] == ["token_expired"] * 3 and set(codes[3:]) == {"too_many_failed_authentications"}
    assert isinstance(keyring.authenticate(provider.token("walter"), source=source), Principal), "a valid token passes"
    assert keyring.authenticate(forged, source="198.51.100.7").code == "token_expired", "per address"
