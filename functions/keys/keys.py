"""A user's own API keys: POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{key_id} and
POST /v1/keys/{key_id}/rotate, with any of the user's working keys.

Collaborators: the account store (MongoDB), when keys were last used (Redis), and the
accounts version, advanced by every revocation and rotation so that every authorizer
instance applies it within a second.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from infergate.api import accounts
from infergate.api.app import admitted_principal, create_app, json_response, lambda_entrypoint
from infergate.bootstrap import instance

services = instance()
app = create_app(services)


@app.post("/v1/keys")
def create_key() -> Response:
    principal = admitted_principal(app)  # who asks first: a refused caller is refused, whatever the body
    request = accounts.key_request(app)
    return accounts.issued(services.keys.create(principal, name=request.name, expires_in_days=request.expires_in_days,
                                                allowed_models=request.allowed_models,
                                                monthly_budget_micros=request.monthly_budget_micros,
                                                model_quotas=request.model_quotas))


@app.get("/v1/keys")
def list_keys() -> Response:
    return accounts.key_list(services.keys.list(admitted_principal(app)))


@app.delete("/v1/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    principal = admitted_principal(app)
    return json_response(accounts.key_view(services.keys.revoke(principal, key_id)))


@app.post("/v1/keys/<key_id>/rotate")
def rotate_key(key_id: str) -> Response:
    principal = admitted_principal(app)
    request = accounts.rotation_request(app)
    successor = services.keys.rotate(principal, key_id, grace_seconds=request.grace_seconds)
    return accounts.issued(successor, replaces=key_id)


lambda_handler = lambda_entrypoint(app)
