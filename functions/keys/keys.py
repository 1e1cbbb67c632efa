"""A user's own API keys: POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{key_id} and
POST /v1/keys/{key_id}/rotate, with any of the user's working keys.

Collaborators (wiring): the account store (MongoDB), when keys were last used (Redis),
and the accounts version, advanced by every revocation and rotation so that every
authorizer instance applies it within a second.
"""

from __future__ import annotations

import re

from aws_lambda_powertools.event_handler import Response

from infergate import wiring
from infergate.api.app import (
    admitted_principal,
    create_app,
    json_response,
    lambda_entrypoint,
    parse_body,
)
from infergate.clock import utc_now
from infergate.domain import accounts
from infergate.errors import NotFound
from infergate.models.keys import CreateKeyRequest, IssuedKeyView, KeyList, KeyView, RotateKeyRequest

app = create_app()
_KEY_ID = re.compile(r"^key_[0-9a-f]{24}$")


def _key_id(key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise NotFound("There is no such key.", code="key_not_found")
    return key_id


@app.post("/v1/keys")
def create_key() -> Response:
    principal = admitted_principal(app)  # who asks first: a refused caller is refused, whatever the body
    request = parse_body(app, CreateKeyRequest, optional=True)
    now = utc_now()
    issued = accounts.create_key(principal, name=request.name, expires_in_days=request.expires_in_days,
                                 store=wiring.account_store(), now=now)
    return json_response(IssuedKeyView.issued(issued, now=now), status=201)


@app.get("/v1/keys")
def list_keys() -> Response:
    principal = admitted_principal(app)
    keys = accounts.keys_of(principal.user_id, store=wiring.account_store())
    last_used = wiring.key_activity().last_used([key.key_id for key in keys])
    now = utc_now()
    return json_response(KeyList(data=[KeyView.of(key, now=now, last_used=last_used) for key in keys]))


@app.delete("/v1/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    principal = admitted_principal(app)
    now = utc_now()
    revoked = accounts.revoke_own_key(principal, _key_id(key_id), store=wiring.account_store(),
                                      version=wiring.accounts_version(), now=now)
    return json_response(KeyView.of(revoked, now=now, last_used=wiring.key_activity().last_used([key_id])))


@app.post("/v1/keys/<key_id>/rotate")
def rotate_key(key_id: str) -> Response:
    principal = admitted_principal(app)
    request = parse_body(app, RotateKeyRequest, optional=True)
    now = utc_now()
    successor = accounts.rotate_key(principal, _key_id(key_id), grace_seconds=request.grace_seconds,
                                    store=wiring.account_store(), version=wiring.accounts_version(), now=now)
    return json_response(IssuedKeyView.issued(successor, now=now, replaces=key_id), status=201)


lambda_handler = lambda_entrypoint(app)
