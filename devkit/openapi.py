"""The API's OpenAPI 3.1 document, generated from one table of its operations.

`python -m devkit.openapi` (what `make openapi` runs) writes
layers/common/infergate/openapi.json: the common layer ships it and
`GET /openapi.json` serves it. Each row of OPERATIONS names a route of
template.yaml (method and path, in API Gateway's `{param}` form), the pydantic
schemas its translator parses (`parse_body`, `parse_query`) and returns, its
success status, and the error codes it can answer with. Each code's status and
meaning come from the edge's one table of errors (infergate/api/errors.py), the
one the functions answer by. The schemas are pydantic's own
(`model_json_schema`), under `components/schemas`. Errors API Gateway makes
itself (its gateway responses) and the authorizer's refusals are added to every
route they can reach.

tests/build/test_openapi.py fails when the table and template.yaml disagree
on the routes, or when the committed document is not what this module
generates now: change a schema, a route or a table, then run `make openapi`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMON_LAYER = ROOT / "layers" / "common"
if str(COMMON_LAYER) not in sys.path:
    sys.path.insert(0, str(COMMON_LAYER))

from pydantic.json_schema import models_json_schema  # noqa: E402

from infergate.api.anthropic import ANTHROPIC_TYPES  # noqa: E402
from infergate.api.errors import ERRORS, status_of, type_of  # noqa: E402
from infergate.schemas import accounts, admin, anthropic, chat, completions, keys, ops, responses, teams, usage  # noqa: E402, I001
from infergate.schemas import openai as oai  # noqa: E402
from infergate.schemas import openai_answers as answers  # noqa: E402
from infergate.schemas.base import Schema  # noqa: E402
from infergate.schemas.errors import ErrorBody  # noqa: E402

OUTPUT = COMMON_LAYER / "infergate" / "openapi.json"
SCHEMAS = "#/components/schemas/"
DEFAULT_MODEL = "smollm2:135m"  # template.yaml's OllamaModel default


class Auth(Enum):
    NONE = "none"  # open to anyone
    USER = "user"  # a user's API key (or, with single sign-on, a sign-in token)
    ADMIN = "admin"  # an operator's admin key
    METRICS = "metrics"  # open, or METRICS_TOKEN as a bearer token when the deployment sets one


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    response: type[Schema] | None  # the success response's body (None: any JSON object)
    status: int = 200
    body: type[Schema] | None = None  # what parse_body reads
    body_optional: bool = False  # parse_body(..., optional=True): no body reads as {}
    query: type[Schema] | None = None  # what parse_query reads
    errors: tuple[str, ...] = ()  # the route's own codes, beside the common ones
    not_found: tuple[str, ...] = ()  # codes it answers with 404 (a NotFound's), whatever their status elsewhere
    examples: Mapping[str, Any] = field(default_factory=dict)  # request bodies, by name
    description: str = ""
    streams: bool = False  # `"stream": true` answers text/event-stream
    prometheus: bool = False  # also answers in Prometheus' text exposition format
    csv: bool = False  # also answers text/csv (`format=csv`)
    text: Mapping[str, str] = field(default_factory=dict)  # answers not JSON but these media types (what each is)
    idempotent: bool = False  # honours an Idempotency-Key
    rate_limited: bool = False  # admitted against the key's requests per minute (X-RateLimit-* headers)
    chat_function: bool = False  # served by ChatFunction (29 s): an overrun is API Gateway's 504
    anthropic: bool = False  # errors in Anthropic's shape ({"type": "error", "error": {"type", "message"}})


# What API Gateway itself can answer on any route: its gateway responses for a body it will not take (413, or 400
# for broken framing), throttling (429), and a function that crashed or overran (502); 500 is a handler's
# unexpected failure. Its own codes are not the functions' (api/errors.py), so their meanings are here.
GATEWAY = {400: ("bad_request",), 413: ("bad_request",), 429: ("rate_limited",), 500: ("internal_error",),
           502: ("gateway_error",)}
GATEWAY_MEANINGS = {
    "bad_request": "API Gateway refused the request before any function saw it: malformed body framing (400) or a "
                   "body over 10 MB (413).",
    "gateway_error": "The function failed or overran its time (API Gateway's own answer).",
}
MEANINGS = {**{code: kind.meaning for code, kind in ERRORS.items()}, **GATEWAY_MEANINGS}
# The authorizer, in front of every protected route: an unknown or missing credential (401), an address with too
# many failed authentications (429), a store it needs that is down (503).
AUTHORIZED = ("unauthorized", "missing_api_key", "invalid_api_key", "api_key_expired", "invalid_token", "token_expired",
              "too_many_failed_authentications", "service_unavailable")
USERS_ONLY = ("forbidden", "account_suspended")
OPERATORS_ONLY = ("forbidden",)
STORES = ("service_unavailable",)
ADMITTED = ("rate_limited",)
METERED = ("invalid_request", "prompt_too_large", "model_not_found", "model_not_allowed", "rate_limited",
           "too_many_concurrent_requests", "quota_held_in_flight", "budget_held_in_flight", "budget_exceeded",
           "model_quota_held_in_flight", "model_quota_exceeded", "quota_exceeded", "upstream_error", "upstream_busy", "service_unavailable",
           "upstream_timeout")
IDEMPOTENT = ("invalid_request", "idempotency_in_progress", "idempotency_key_reused", "service_unavailable")


def joined(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The groups' codes, each once, in order."""
    return tuple(dict.fromkeys(code for group in groups for code in group))


def codes(*groups: tuple[str, ...] | Mapping[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """The groups' codes by status, each status's in the order they first appear. A group is codes, whose
    status the table of errors gives, or codes by status (API Gateway's own)."""
    merged: dict[int, tuple[str, ...]] = {}
    for group in groups:
        pairs = group.items() if isinstance(group, Mapping) else ((status_of(code), (code,)) for code in group)
        for status, names in pairs:
            merged[status] = tuple(dict.fromkeys((*merged.get(status, ()), *names)))
    return merged


CHAT_MESSAGES = [{"role": "system", "content": "Answer in one sentence."},
                 {"role": "user", "content": "What is the capital of France?"}]

# Every route of template.yaml, and what its handler takes and answers.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation(
        "health", "Liveness: the function answers; nothing else is asked.", "Operations", Auth.NONE,
        ops.HealthResponse),
    ("GET", "/health/ready"): Operation(
        "ready", "Readiness: MongoDB, Redis and the model server each answer in time.", "Operations", Auth.NONE,
        ops.ReadinessResponse,
        description="503 (with the same body, naming what fails, and `Retry-After`) when any of them does not."),
    ("GET", "/metrics"): Operation(
        "metrics", "Request totals, uptime and memory; or every instance's request metrics for Prometheus.",
        "Operations", Auth.METRICS, ops.MetricsResponse, query=ops.MetricsQuery,
        errors=joined(("invalid_request", "unauthorized"), STORES),
        description="Open unless the deployment sets METRICS_TOKEN; then it wants "
                    "`Authorization: Bearer <METRICS_TOKEN>`. With `Accept: text/plain` or `?format=prometheus` "
                    "the answer is Prometheus' text exposition format (0.0.4).", prometheus=True),
    ("GET", "/openapi.json"): Operation(
        "openapi", "This document.", "Operations", Auth.NONE, None),
    ("GET", "/console"): Operation(
        "console", "The web console: keys, usage and a playground for users; users, usage, model servers and the "
        "audit log for operators.", "Console", Auth.NONE, None,
        text={"text/html": "The console's page: it signs in with an API key, an admin key or single sign-on "
                           "(CONSOLE_OIDC_ISSUER), and calls this API from the same origin."},
        description="Never cached; its Content-Security-Policy allows scripts and styles from the gateway alone."),
    ("GET", "/console/assets/{asset}"): Operation(
        "consoleAsset", "A file of the console, by the hashed name its page gives.", "Console", Auth.NONE, None,
        text={"text/javascript": "The console's script.", "text/css": "The console's styles."},
        not_found=("not_found",), description="Cached for a year (`immutable`): a release that changes a file "
                                              "changes its name."),
    ("POST", "/v1/register"): Operation(
        "register", "A new user and their first API key (shown once).", "Accounts", Auth.NONE,
        accounts.RegisterResponse, status=201, body=accounts.RegisterRequest,
        errors=joined(("invalid_request", "email_already_registered", "rate_limited"), STORES),
        examples={"register": {"email": "ada@example.com"}},
        description="Limited per source address (REGISTER_RATE_LIMIT_PER_HOUR); refused (503) while Redis cannot "
                    "be reached."),
    ("POST", "/v1/chat"): Operation(
        "chat", "A chat: a prompt or messages in, the model's answer and its token counts out.", "Chat", Auth.USER,
        chat.ChatResponse, body=chat.ChatRequest, errors=joined(USERS_ONLY, METERED, IDEMPOTENT),
        examples={"prompt": {"prompt": "Write a haiku about mountains.", "max_tokens": 60},
                  "messages": {"messages": CHAT_MESSAGES},
                  "streamed": {"prompt": "Write a haiku about mountains.", "stream": True}},
        description="With `\"stream\": true` the answer is `text/event-stream`, sent as it is generated: an "
                    "`event: delta` per piece, then `event: done` with the whole answer, or `event: error` if it "
                    "was cut off.",
        streams=True, idempotent=True, rate_limited=True, chat_function=True),
    ("POST", "/v1/chat/completions"): Operation(
        "createChatCompletion", "OpenAI's Chat Completions.", "OpenAI-compatible", Auth.USER,
        answers.ChatCompletion, body=oai.ChatCompletionRequest, errors=joined(USERS_ONLY, METERED, IDEMPOTENT),
        examples={"completion": {"model": DEFAULT_MODEL, "messages": CHAT_MESSAGES, "max_tokens": 40},
                  "streamed": {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Hello!"}],
                               "stream": True, "stream_options": {"include_usage": True}}},
        description="With `\"stream\": true` the answer is `text/event-stream`, sent as it is generated: one "
                    "`data: <chat.completion.chunk>` event per piece, then `data: [DONE]`; an answer cut off ends "
                    "with `data: {\"error\": ...}` instead.",
        streams=True, idempotent=True, rate_limited=True, chat_function=True),
    ("POST", "/v1/completions"): Operation(
        "createCompletion", "OpenAI's legacy Completions, with `suffix` for fill-in-the-middle.", "OpenAI-compatible",
        Auth.USER, completions.TextCompletion, body=completions.CompletionRequest,
        errors=joined(USERS_ONLY, METERED, IDEMPOTENT),
        examples={"fill-in-the-middle": {"model": DEFAULT_MODEL, "prompt": "def add(a, b):\n    ",
                                         "suffix": "\n    return c", "max_tokens": 20}},
        description="With `\"stream\": true` the answer is `text/event-stream`: one `data: <text_completion>` "
                    "event per piece, then `data: [DONE]`; an answer cut off ends with `data: {\"error\": ...}`. "
                    "`echo`, `best_of`, `n` > 1 and `logprobs` are refused, naming the field.",
        streams=True, idempotent=True, rate_limited=True, chat_function=True),
    ("POST", "/v1/messages"): Operation(
        "createMessage", "Anthropic's Messages API, as Claude Code speaks it.", "Anthropic-compatible", Auth.USER,
        anthropic.MessageOut, body=anthropic.MessagesRequest, errors=joined(USERS_ONLY, METERED, IDEMPOTENT),
        examples={"message": {"model": DEFAULT_MODEL, "max_tokens": 64,
                              "messages": [{"role": "user", "content": "Hello!"}]}},
        description="Errors are Anthropic's: `{\"type\": \"error\", \"error\": {\"type\", \"message\"}}`. With "
                    "`\"stream\": true` the answer is Anthropic's events (message_start, content_block_*, "
                    "message_delta, message_stop, ping; `error` when cut off). Hints a self-hosted model cannot "
                    "apply are accepted and named in the `InferGate-Ignored` header.",
        streams=True, idempotent=True, rate_limited=True, chat_function=True, anthropic=True),
    ("POST", "/v1/messages/count_tokens"): Operation(
        "countMessageTokens", "The tokens InferGate holds for a message's prompt (an upper bound), not metered.",
        "Anthropic-compatible", Auth.USER, anthropic.TokenCount, body=anthropic.CountTokensRequest,
        errors=joined(USERS_ONLY, ("invalid_request",), ADMITTED, STORES),
        examples={"count": {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Hello!"}]}},
        rate_limited=True, chat_function=True, anthropic=True),
    ("POST", "/v1/responses"): Operation(
        "createResponse", "OpenAI's Responses API, as Codex CLI and the Agents SDK speak it.", "OpenAI-compatible",
        Auth.USER, responses.ResponseObject, body=responses.ResponsesRequest,
        errors=joined(USERS_ONLY, METERED, IDEMPOTENT), not_found=("response_not_found",),
        examples={"response": {"model": DEFAULT_MODEL, "input": "Hello!", "max_output_tokens": 64}},
        description="With `store` (the default) the response is kept for RESPONSES_RETENTION_DAYS, for "
                    "`previous_response_id` to go on from. With `\"stream\": true` the answer is the Responses "
                    "events, each with its `sequence_number`; `response.failed` when cut off. Hints a self-hosted "
                    "model cannot apply are accepted and named in the `InferGate-Ignored` header.",
        streams=True, idempotent=True, rate_limited=True, chat_function=True),
    ("GET", "/v1/responses/{response_id}"): Operation(
        "getResponse", "A response kept for the caller.", "OpenAI-compatible", Auth.USER, responses.ResponseObject,
        errors=joined(USERS_ONLY, ADMITTED, STORES), not_found=("response_not_found",), rate_limited=True,
        chat_function=True),
    ("DELETE", "/v1/responses/{response_id}"): Operation(
        "deleteResponse", "Forget a response kept for the caller.", "OpenAI-compatible", Auth.USER,
        responses.Deleted, errors=joined(USERS_ONLY, ADMITTED, STORES), not_found=("response_not_found",),
        rate_limited=True, chat_function=True),
    ("GET", "/v1/responses/{response_id}/input_items"): Operation(
        "listResponseInputItems", "What a kept response was asked, a page at a time.", "OpenAI-compatible",
        Auth.USER, responses.ItemList, query=responses.ItemsQuery,
        errors=joined(USERS_ONLY, ("invalid_request",), ADMITTED, STORES), not_found=("response_not_found",),
        rate_limited=True, chat_function=True),
    ("POST", "/v1/embeddings"): Operation(
        "createEmbedding", "OpenAI's Embeddings.", "OpenAI-compatible", Auth.USER,
        answers.EmbeddingList, body=oai.EmbeddingRequest, errors=joined(USERS_ONLY, METERED),
        examples={"embedding": {"model": DEFAULT_MODEL, "input": "The food was delicious."}},
        rate_limited=True, chat_function=True),
    ("GET", "/v1/models"): Operation(
        "listModels", "The models this gateway serves.", "OpenAI-compatible", Auth.USER, answers.ModelList,
        errors=joined(USERS_ONLY, ADMITTED, ("upstream_error",), STORES), rate_limited=True,
        chat_function=True),
    ("GET", "/v1/models/{model}"): Operation(
        "retrieveModel", "One model this gateway serves.", "OpenAI-compatible", Auth.USER, answers.ModelCard,
        errors=joined(USERS_ONLY, ADMITTED, ("upstream_error",), STORES), not_found=("model_not_found",),
        rate_limited=True, chat_function=True),
    ("GET", "/v1/usage"): Operation(
        "usage", "Where the caller stands this month, or stood in a past one.", "Usage", Auth.USER,
        usage.UsageResponse, query=usage.UsageQuery,
        errors=joined(USERS_ONLY, ("invalid_request",), ADMITTED, STORES), rate_limited=True),
    ("POST", "/v1/keys"): Operation(
        "createKey", "A new API key for the caller (its plaintext shown once).", "Keys", Auth.USER,
        keys.IssuedKeyView, status=201, body=keys.CreateKeyRequest, body_optional=True,
        errors=joined(USERS_ONLY, ("invalid_request", "too_many_keys"), ADMITTED, STORES),
        examples={"named": {"name": "ci runner", "expires_in_days": 90}}, rate_limited=True),
    ("GET", "/v1/keys"): Operation(
        "listKeys", "The caller's keys, never a secret.", "Keys", Auth.USER, keys.KeyList,
        errors=joined(USERS_ONLY, ADMITTED, STORES), rate_limited=True),
    ("DELETE", "/v1/keys/{key_id}"): Operation(
        "revokeKey", "Revoke one of the caller's keys.", "Keys", Auth.USER, keys.KeyView,
        errors=joined(USERS_ONLY, ("key_not_found",), ADMITTED, STORES), rate_limited=True),
    ("POST", "/v1/keys/{key_id}/rotate"): Operation(
        "rotateKey", "A successor for one of the caller's keys; the old one works for a grace period.", "Keys",
        Auth.USER, keys.IssuedKeyView, status=201, body=keys.RotateKeyRequest, body_optional=True,
        errors=joined(USERS_ONLY, ("invalid_request", "key_not_found", "key_not_active"),
                     ADMITTED, STORES),
        examples={"an hour's grace": {"grace_seconds": 3600}}, rate_limited=True),
    ("GET", "/admin/v1/users"): Operation(
        "listUsers", "List and search users (by email prefix, plan), a page at a time.", "Admin", Auth.ADMIN,
        admin.UserPage, query=admin.UserQuery, errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES)),
    ("GET", "/admin/v1/users/{user_id}"): Operation(
        "showUser", "One user, with their keys and this month's usage.", "Admin", Auth.ADMIN, admin.UserDetail,
        errors=joined(OPERATORS_ONLY, ("user_not_found",), STORES)),
    ("PATCH", "/admin/v1/users/{user_id}"): Operation(
        "changeUser", "Change a user's plan or overrides, or suspend or reactivate them.", "Admin", Auth.ADMIN,
        admin.UserView, body=admin.ChangeUserRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request", "user_not_found"), STORES),
        examples={"overrides": {"overrides": {"rate_limit_rpm": 300, "monthly_token_quota": 2000000}},
                  "suspend": {"status": "suspended"}}),
    ("POST", "/admin/v1/users/{user_id}/grants"): Operation(
        "grantTokens", "Extra tokens for a user, this month.", "Admin", Auth.ADMIN, admin.UserView, status=201,
        body=admin.GrantRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request", "user_not_found"), STORES),
        examples={"grant": {"tokens": 50000}}),
    ("PATCH", "/admin/v1/keys/{key_id}"): Operation(
        "changeAnyKey", "Set (null clears) any user's key's own monthly budget or models; audited.", "Admin",
        Auth.ADMIN, keys.KeyView, body=admin.ChangeKeyRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request", "key_not_found"), STORES),
        examples={"a CI key": {"monthly_budget_micros": 2000000, "allowed_models": ["llama3.1:8b"]}}),
    ("DELETE", "/admin/v1/keys/{key_id}"): Operation(
        "revokeAnyKey", "Revoke any user's key.", "Admin", Auth.ADMIN, admin.RevokedKey,
        errors=joined(OPERATORS_ONLY, ("key_not_found",), STORES)),
    ("GET", "/admin/v1/admin-keys"): Operation(
        "listAdminKeys", "Every admin key, never its secret (the admin role only).", "Admin", Auth.ADMIN,
        admin.AdminKeyList, errors=joined(OPERATORS_ONLY, STORES)),
    ("POST", "/admin/v1/admin-keys"): Operation(
        "createAdminKey", "A new admin key (its plaintext shown once), audited.", "Admin", Auth.ADMIN,
        admin.IssuedAdminKey, status=201, body=admin.CreateAdminKeyRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES),
        examples={"an auditor's": {"name": "auditor", "role": "viewer"}}),
    ("DELETE", "/admin/v1/admin-keys/{key_id}"): Operation(
        "revokeAdminKey", "Revoke an admin key, audited; every instance refuses it within a second.", "Admin",
        Auth.ADMIN, admin.AdminKeyView, errors=joined(OPERATORS_ONLY, ("key_not_found",), STORES)),
    ("GET", "/admin/v1/usage"): Operation(
        "usageAcrossUsers", "A month's totals and its heaviest users, and with `by` its breakdown by team, user, "
        "key or model (`format=csv`: the breakdown alone, as CSV).", "Admin", Auth.ADMIN, admin.UsageSummary,
        query=admin.UsageSummaryQuery, errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES), csv=True),
    ("GET", "/admin/v1/plans"): Operation(
        "listPlans", "The plans and their figures.", "Admin", Auth.ADMIN, admin.PlanList,
        errors=joined(OPERATORS_ONLY, STORES)),
    ("GET", "/admin/v1/teams"): Operation(
        "listTeams", "Teams, a page at a time.", "Admin", Auth.ADMIN, teams.TeamPage, query=admin.PageQuery,
        errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES)),
    ("POST", "/admin/v1/teams"): Operation(
        "createTeam", "A team, with a monthly token quota, budget and models if given; audited.", "Admin",
        Auth.ADMIN, teams.TeamView, status=201, body=teams.CreateTeamRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES),
        examples={"ml team": {"name": "ml", "monthly_token_quota": 20000000, "monthly_budget_micros": 50000000,
                              "allowed_models": ["llama3.1:8b"]}}),
    ("GET", "/admin/v1/teams/{team_id}"): Operation(
        "showTeam", "One team, with its members and this month's standing.", "Admin", Auth.ADMIN, teams.TeamDetail,
        errors=joined(OPERATORS_ONLY, ("team_not_found",), STORES)),
    ("PATCH", "/admin/v1/teams/{team_id}"): Operation(
        "changeTeam", "Set any of a team's figures (null clears one); audited.", "Admin", Auth.ADMIN, teams.TeamView,
        body=teams.ChangeTeamRequest, errors=joined(OPERATORS_ONLY, ("invalid_request", "team_not_found"), STORES),
        examples={"budget": {"monthly_budget_micros": 100000000}, "no quota": {"monthly_token_quota": None}}),
    ("POST", "/admin/v1/teams/{team_id}/members"): Operation(
        "addTeamMember", "Add a user to a team (a user belongs to one at a time); audited.", "Admin", Auth.ADMIN,
        admin.UserView, body=teams.MemberRequest,
        errors=joined(OPERATORS_ONLY, ("invalid_request", "team_not_found", "user_not_found", "conflict"), STORES)),
    ("POST", "/admin/v1/teams/{team_id}/service-accounts"): Operation(
        "createServiceAccount", "A service account of the team's: a principal with keys but no person (a "
        "backend's); its first key shown once; audited.", "Admin", Auth.ADMIN, teams.ServiceAccountView, status=201,
        body=teams.ServiceAccountRequest, errors=joined(OPERATORS_ONLY, ("invalid_request", "team_not_found"), STORES),
        examples={"a backend": {"name": "search-backend"}}),
    ("DELETE", "/admin/v1/teams/{team_id}/members/{user_id}"): Operation(
        "removeTeamMember", "Take a user out of a team; audited.", "Admin", Auth.ADMIN, admin.UserView,
        errors=joined(OPERATORS_ONLY, ("user_not_found",), STORES)),
    ("GET", "/admin/v1/prices"): Operation(
        "listPrices", "What each model's tokens cost (MODEL_PRICES), in millionths of the currency.", "Admin",
        Auth.ADMIN, admin.PriceList, errors=joined(OPERATORS_ONLY, STORES)),
    ("GET", "/admin/v1/servers"): Operation(
        "listServers", "The model servers of the pool: health, breaker, models, load and last minute.", "Admin",
        Auth.ADMIN, admin.ServerList, errors=joined(OPERATORS_ONLY, STORES)),
    ("GET", "/admin/v1/audit"): Operation(
        "audit", "The audit log, newest first, a page at a time.", "Admin", Auth.ADMIN, admin.AuditPage,
        query=admin.AuditQuery, errors=joined(OPERATORS_ONLY, ("invalid_request",), STORES)),
}

PATH_PARAMETERS = {
    "model": ("A model's name, as GET /v1/models lists it.", DEFAULT_MODEL),
    "key_id": ("A key's id (`key_...`).", "key_5d0bcbd6b3e6c8e7d57d3e70"),
    "user_id": ("A user's id (`usr_...`).", "usr_8114c73faa4ecc16688ad5fb"),
    "team_id": ("A team's id (`team_...`).", "team_41d2a9c07be3f6d8e15a2c90"),
    "response_id": ("A kept response's id (`resp_...`).", "resp_chat_36d83be479a9cf7ff1911bb0"),
    "asset": ("A console file's hashed name, as the console's page gives it.", "console.3f2a9c07be3f.js"),
}

SECURITY = {
    Auth.NONE: [],
    Auth.USER: [{"ApiKey": []}, {"BearerKey": []}],
    Auth.ADMIN: [{"AdminApiKey": []}, {"AdminBearerKey": []}],
    Auth.METRICS: [{}, {"MetricsToken": []}],
}

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
               "description": "A user's API key (`igk_...`), as POST /v1/register or POST /v1/keys gave it."},
    "BearerKey": {"type": "http", "scheme": "bearer",
                  "description": "A user's API key as `Authorization: Bearer <key>`; with single sign-on configured, "
                                 "also a token (a JWT) from the organisation's identity provider."},
    "AdminApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                    "description": "An operator's admin key (`iga_...`; `make admin-key` makes the first)."},
    "AdminBearerKey": {"type": "http", "scheme": "bearer",
                       "description": "An operator's admin key as `Authorization: Bearer <key>`."},
    "MetricsToken": {"type": "http", "scheme": "bearer",
                     "description": "METRICS_TOKEN, when the deployment sets one; otherwise GET /metrics is open."},
}

HEADERS = {
    "RequestId": {"description": "The request's id: quote it when reporting a problem.", "required": True,
                  "schema": {"type": "string", "minLength": 1}},
    "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}},
    "RateLimitLimit": {"description": "Requests per minute the key may make.", "schema": {"type": "integer"}},
    "RateLimitRemaining": {"description": "Requests left in the current minute's window.",
                           "schema": {"type": "integer"}},
    "RateLimitReset": {"description": "Seconds until the oldest request in the window leaves it.",
                       "schema": {"type": "integer", "minimum": 0}},
    "RateLimitLimitTokens": {"description": "Tokens per minute the user may use.", "schema": {"type": "integer"}},
    "RateLimitRemainingTokens": {"description": "Tokens left in the current minute's window.",
                                 "schema": {"type": "integer"}},
    "RateLimitResetTokens": {"description": "Seconds until the oldest tokens in the window leave it.",
                             "schema": {"type": "integer", "minimum": 0}},
    "IdempotentReplayed": {"description": "`true` when the answer is the one an earlier request with the same "
                                          "Idempotency-Key got.", "schema": {"type": "string", "enum": ["true"]}},
    "WWWAuthenticate": {"description": "The scheme credentials are expected in.", "schema": {"type": "string"}},
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "A retry with the same key and body is answered once and charged once; the same key with another "
                   "body gets 422. An empty value is the same as none.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}

REASONS = {200: "OK", 201: "Created", 400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           409: "Conflict", 413: "Payload too large", 422: "Unprocessable", 429: "Too many requests",
           500: "Internal error", 502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout"}

DESCRIPTION = """\
An API gateway for self-hosted language models: API keys, exact token metering, rate limits and monthly quotas in \
front of an Ollama model server, with InferGate's own chat API and an OpenAI-compatible one.

**Authentication.** Protected routes take a user's API key in `x-api-key` or as `Authorization: Bearer <key>` \
(with single sign-on configured, also the identity provider's token as a bearer token); the admin API takes an \
admin key the same way. `/health`, `/health/ready`, `/metrics`, `/openapi.json`, the console's page and files, \
and `POST /v1/register` need none; `/metrics` wants `Authorization: Bearer <METRICS_TOKEN>` when the deployment sets one.

**Errors.** Every error, on every route, has one body: `{"error": {"message", "type", "param", "code"}}`, where \
`type` follows from the status (OpenAI's error types), `code` is stable and listed under each response, and \
`param` names the request's field at fault, if one is. Every response carries `x-request-id`.

**Limits.** Authenticated responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` for \
requests per minute, and the same with `-Tokens` for tokens per minute when a chat was admitted; every 429 carries \
`Retry-After`.
"""


def build() -> dict[str, Any]:
    """The OpenAPI document for OPERATIONS."""
    schemas = _SchemaSet()
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(path, operation, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "InferGate", "version": _version(), "description": DESCRIPTION},
        "servers": [
            {"url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
             "description": "A deployed stack: its ApiUrl output.",
             "variables": {"apiId": {"default": "abcdef0123"}, "region": {"default": "us-east-1"},
                           "stage": {"default": "prod", "description": "The StageName parameter."}}},
            {"url": "http://127.0.0.1:3000", "description": "`make run`"},
        ],
        "tags": [{"name": name} for name in dict.fromkeys(operation.tag for operation in OPERATIONS.values())],
        "paths": paths,
        "components": {
            "schemas": schemas.definitions(),
            "responses": schemas.responses(),
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


class _SchemaSet:
    """pydantic's schemas of the models the operations use, in one `components/schemas`."""

    def __init__(self) -> None:
        pairs = {(ErrorBody, "serialization"), (answers.ChatCompletionChunk, "serialization"),
                 (chat.ChatDelta, "serialization"), (anthropic.AnthropicError, "serialization")}
        for operation in OPERATIONS.values():
            if operation.body is not None:
                pairs.add((operation.body, "validation"))
            if operation.response is not None:
                pairs.add((operation.response, "serialization"))
        ordered = sorted(pairs, key=lambda pair: (pair[0].__module__, pair[0].__qualname__, pair[1]))
        self._refs, definitions = models_json_schema(ordered, ref_template=SCHEMAS + "{model}")
        self._definitions = dict(sorted(definitions.get("$defs", {}).items()))
        self._responses: dict[str, dict[str, Any]] = {}

    def ref(self, model: type[Schema], mode: str) -> dict[str, str]:
        return self._refs[(model, mode)]

    def definitions(self) -> dict[str, Any]:
        return self._definitions

    def response(self, response: dict[str, Any], name: str) -> dict[str, str]:
        """A reference to `response`, kept once under `components/responses` as `name`."""
        if self._responses.setdefault(name, response) != response:
            raise ValueError(f"two different responses are both named {name}")
        return {"$ref": f"#/components/responses/{name}"}

    def responses(self) -> dict[str, Any]:
        return dict(sorted(self._responses.items()))


def _operation(path: str, operation: Operation, schemas: _SchemaSet) -> dict[str, Any]:
    document: dict[str, Any] = {"operationId": operation.operation_id, "summary": operation.summary,
                                "tags": [operation.tag]}
    if operation.description:
        document["description"] = operation.description
    parameters = [_path_parameter(name) for name in re.findall(r"\{(\w+)\}", path)]
    if operation.query is not None:
        parameters += _query_parameters(operation.query)
    if operation.idempotent:
        parameters.append(IDEMPOTENCY_KEY)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        media: dict[str, Any] = {"schema": schemas.ref(operation.body, "validation")}
        if operation.examples:
            media["examples"] = {name: {"value": value} for name, value in operation.examples.items()}
        document["requestBody"] = {"required": not operation.body_optional, "content": {"application/json": media}}
        if operation.body_optional:
            document["requestBody"]["description"] = "Optional: no body reads as `{}`."
    document["responses"] = _responses(operation, schemas)
    document["security"] = SECURITY[operation.auth]
    return document


def _path_parameter(name: str) -> dict[str, Any]:
    description, example = PATH_PARAMETERS[name]
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}, "example": example}


def _query_parameters(model: type[Schema]) -> list[dict[str, Any]]:
    """One query parameter per field of `model`, as parse_query reads them (each one optional)."""
    schema = model.model_json_schema(mode="validation", ref_template=SCHEMAS + "{model}")
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: a query parameter cannot hold a nested model")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = _without_null(field_schema)
        description = field_schema.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field_schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its `null`: a query parameter is absent, never null."""
    schema = dict(schema)
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if "anyOf" in schema and len(options) == 1:
        del schema["anyOf"]
        inner = dict(options[0])
        if "description" in inner and "description" in schema:
            inner.pop("description")
        schema = {**inner, **schema}
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


RATE_HEADERS = {"X-RateLimit-Limit": _header("RateLimitLimit"), "X-RateLimit-Remaining": _header("RateLimitRemaining"),
                "X-RateLimit-Reset": _header("RateLimitReset")}
TOKEN_HEADERS = {"X-RateLimit-Limit-Tokens": _header("RateLimitLimitTokens"),
                 "X-RateLimit-Remaining-Tokens": _header("RateLimitRemainingTokens"),
                 "X-RateLimit-Reset-Tokens": _header("RateLimitResetTokens")}


def _responses(operation: Operation, schemas: _SchemaSet) -> dict[str, Any]:
    responses: dict[str, Any] = {str(operation.status): _success(operation, schemas)}
    groups: list[tuple[str, ...] | Mapping[int, tuple[str, ...]]] = [GATEWAY, operation.errors]
    if operation.not_found:
        groups.append({404: operation.not_found})
    if operation.auth in (Auth.USER, Auth.ADMIN):
        groups.insert(1, AUTHORIZED)
    if operation.chat_function:
        groups.append(("upstream_timeout",))
    if operation.body is not None:
        groups.append(("request_too_large",))
    errors = codes(*groups)
    for status in sorted(errors):
        if operation.response is ops.ReadinessResponse and status == 503:
            continue
        name = ".".join((str(status), *errors[status], *(("anthropic",) if operation.anthropic else ())))
        responses[str(status)] = schemas.response(_error(status, errors[status], anthropic=operation.anthropic), name)
    if operation.response is ops.ReadinessResponse:
        responses["503"] = {
            "description": "Not ready: the body names what fails.",
            "headers": {"x-request-id": _header("RequestId"), "Retry-After": _header("RetryAfter")},
            "content": {"application/json": {"schema": schemas.ref(ops.ReadinessResponse, "serialization")}},
        }
        responses = dict(sorted(responses.items()))
    return responses


def _success(operation: Operation, schemas: _SchemaSet) -> dict[str, Any]:
    headers = {"x-request-id": _header("RequestId")}
    if operation.rate_limited:
        headers |= RATE_HEADERS
    if operation.chat_function and operation.body is not None:
        headers |= TOKEN_HEADERS
    if operation.idempotent:
        headers["Idempotent-Replayed"] = _header("IdempotentReplayed")
    if operation.response is None:
        schema: dict[str, Any] = {"type": "object", "description": "This document (OpenAPI 3.1)."}
    else:
        schema = schemas.ref(operation.response, "serialization")
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if operation.text:
        content = {media: {"schema": {"type": "string", "description": what}} for media, what in operation.text.items()}
    if operation.prometheus:
        content["text/plain"] = {"schema": {"type": "string", "description": "Prometheus' text exposition format, "
                                            "version 0.0.4: the infergate_* families, every instance's together."}}
    if operation.csv:
        content["text/csv"] = {"schema": {"type": "string", "description": "With `format=csv`: a header row "
                                          "(period, what it is by, tokens, requests, cost_micros, currency), then "
                                          "one row each, RFC 4180."}}
    if operation.streams:
        events = {chat.ChatResponse: _chat_events, anthropic.MessageOut: _anthropic_events,
                  responses.ResponseObject: _response_events, completions.TextCompletion: _text_completion_events}
        content["text/event-stream"] = {"schema": events.get(operation.response, _completion_events)(schemas)}
    return {"description": REASONS[operation.status], "headers": headers, "content": content}


def _completion_events(schemas: _SchemaSet) -> dict[str, Any]:
    """One server-sent event of a streamed completion (before OpenAPI 3.2's `itemSchema`, a text/event-stream's
    `schema` describes each event): its `data` is a chat.completion.chunk as JSON, `[DONE]` for the last, or an
    error that ends an answer cut off."""
    return {
        "type": "object",
        "description": "One server-sent event: `data: <chat.completion.chunk as JSON>`, and `data: [DONE]` last; "
                       "an answer cut off ends with `data: {\"error\": ...}` and no `[DONE]`.",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "const": "message"},
            "data": {
                "type": "string",
                "if": {"const": "[DONE]"},
                "else": {"contentMediaType": "application/json", "contentSchema": {"oneOf": [
                    schemas.ref(answers.ChatCompletionChunk, "serialization"), schemas.ref(ErrorBody, "serialization")]}},
            },
        },
    }


def _text_completion_events(schemas: _SchemaSet) -> dict[str, Any]:
    """One server-sent event of a streamed legacy completion: a text_completion chunk, `[DONE]`, or an error."""
    return {
        "type": "object",
        "description": "One server-sent event: `data: <text_completion as JSON>`, and `data: [DONE]` last; an answer "
                       "cut off ends with `data: {\"error\": ...}` and no `[DONE]`.",
        "required": ["data"],
        "properties": {"data": {"type": "string", "if": {"const": "[DONE]"}, "else": {
            "contentMediaType": "application/json", "contentSchema": {"oneOf": [
                schemas.ref(completions.TextCompletion, "serialization"), schemas.ref(ErrorBody, "serialization")]}}}},
    }


ANTHROPIC_EVENTS = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop", "ping", "error"]
RESPONSE_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                   "response.content_part.done", "response.reasoning_text.delta", "response.reasoning_text.done",
                   "response.function_call_arguments.delta", "response.function_call_arguments.done",
                   "response.output_item.done", "response.completed", "response.incomplete", "response.failed"]


def _named_events(description: str, names: list[str], required: list[str]) -> dict[str, Any]:
    """Server-sent events named as their data's `type`, each data a JSON object."""
    return {
        "type": "object", "description": description, "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": names}, "data": {
            "type": "string", "contentMediaType": "application/json", "contentSchema": {
                "type": "object", "required": required, "properties": {"type": {"enum": names}}}}},
    }


def _anthropic_events(schemas: _SchemaSet) -> dict[str, Any]:
    return _named_events("One of Anthropic's Messages events, in its order: message_start, ping, each content "
                         "block's start, deltas and stop, message_delta (the stop reason and usage), message_stop; "
                         "`error` when the answer was cut off.", ANTHROPIC_EVENTS, ["type"])


def _response_events(schemas: _SchemaSet) -> dict[str, Any]:
    return _named_events("One of the Responses API's events, each with its `sequence_number`: created, in "
                         "progress, each output item added, its deltas and done, then completed (incomplete when "
                         "max_output_tokens ran out; failed when cut off).", RESPONSE_EVENTS,
                         ["type", "sequence_number"])


def _chat_events(schemas: _SchemaSet) -> dict[str, Any]:
    """One server-sent event of a streamed POST /v1/chat: a piece, the whole answer, or the error that cut it."""
    def event(name: str, model: type, meaning: str) -> dict[str, Any]:
        return {"description": meaning, "properties": {
            "event": {"const": name},
            "data": {"contentMediaType": "application/json", "contentSchema": schemas.ref(model, "serialization")}}}

    return {
        "type": "object",
        "description": "One server-sent event: `event: delta` per piece, then `event: done`, or `event: error`.",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": ["delta", "done", "error"]}, "data": {"type": "string"}},
        "oneOf": [event("delta", chat.ChatDelta, "A piece of the answer, as the model produced it."),
                  event("done", chat.ChatResponse, "The whole answer and its token counts; the last event."),
                  event("error", ErrorBody, "Why the answer was cut off, and what it was charged; the last event.")],
    }


def _error(status: int, names: tuple[str, ...], *, anthropic: bool = False) -> dict[str, Any]:
    headers = {"x-request-id": _header("RequestId")}
    if status == 401:
        headers["WWW-Authenticate"] = _header("WWWAuthenticate")
    if status == 429:
        headers["Retry-After"] = {**HEADERS["RetryAfter"], "required": True}
        headers |= RATE_HEADERS  # when a limit of the key's or the user's refused it
    if status in (409, 503):
        headers["Retry-After"] = _header("RetryAfter")
    lines = "\n".join(f"- `{name}`: {MEANINGS[name]}" for name in names)
    if anthropic:  # Anthropic's body names no code: the codes say why, its type says what kind
        kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        schema = {"allOf": [{"$ref": SCHEMAS + "AnthropicError"}],
                  "properties": {"error": {"properties": {"type": {"const": kind}}}}}
        return {"description": f"{REASONS[status]}, for one of:\n\n{lines}", "headers": headers,
                "content": {"application/json": {"schema": schema}}}
    return {
        "description": f"{REASONS[status]}. `error.code` is one of:\n\n{lines}",
        "headers": headers,
        "content": {"application/json": {"schema": {
            "allOf": [{"$ref": SCHEMAS + "ErrorBody"}],
            "properties": {"error": {"properties": {"type": {"const": type_of(status)}, "code": {"enum": list(names)}}}},
        }}},
    }


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def template_routes() -> set[tuple[str, str]]:
    """The (method, path) of every route template.yaml declares."""
    from devkit import template

    return {(route.method, route.path) for route in template.load(ROOT / "template.yaml").api.routes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed document is out of date")
    arguments = parser.parse_args(argv)
    routes, table = template_routes(), set(OPERATIONS)
    if routes != table:
        for method, path in sorted(routes - table):
            print(f"template.yaml has {method} {path}; devkit/openapi.py's OPERATIONS does not", file=sys.stderr)
        for method, path in sorted(table - routes):
            print(f"devkit/openapi.py's OPERATIONS has {method} {path}; template.yaml does not", file=sys.stderr)
        return 1
    text = render()
    if arguments.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(OPERATIONS)} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
