"""The settings as pydantic declares them (infergate.config.Settings): each variable, its default
and its range. A function instance's init does not import this module: it checks its settings
with the validator pydantic compiles from `Settings`, kept as data (config.SCHEMA_FILE)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from infergate.config import SettingsRules
from infergate.domain.pool import OLLAMA, UNBOUNDED
from infergate.schemas.base import ModelName, Schema


class Settings(SettingsRules, Schema):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    mongodb_uri: str = Field("mongodb://127.0.0.1:27017", alias="MONGODB_URI")
    # Where MONGODB_URI (REDIS_URL) is kept instead, when set: a Secrets Manager secret's ARN
    # or an SSM parameter's name (see secret_store). It takes precedence over the value.
    mongodb_uri_secret: str = Field("", alias="MONGODB_URI_SECRET")
    mongodb_db: str = Field("infergate", alias="MONGODB_DB")
    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_url_secret: str = Field("", alias="REDIS_URL_SECRET")
    # Every key InferGate writes starts with this, so that several stacks can share one Redis.
    redis_key_prefix: str = Field("infergate:", pattern=r"^[A-Za-z0-9_.:-]{1,64}$", alias="REDIS_KEY_PREFIX")
    ollama_url: str = Field("http://127.0.0.1:11434", alias="OLLAMA_URL")
    # The pool of model servers, as JSON (see `pool`); when set, it alone names the servers. Or
    # where it is kept (a Secrets Manager secret's ARN or an SSM parameter's name): its URLs and
    # keys may be credentials.
    model_servers: str = Field("", alias="MODEL_SERVERS")
    model_servers_secret: str = Field("", alias="MODEL_SERVERS_SECRET")
    # Public model names and their models in fallback order: {"chat": ["llama3.1:70b", "llama3.1:8b"]}.
    model_aliases: str = Field("", alias="MODEL_ALIASES")
    # How long a request waits for a free slot while every server of its model is full.
    queue_timeout_seconds: float = Field(10.0, ge=0, le=880, alias="QUEUE_TIMEOUT_SECONDS")
    # A conversation's later turns go to the server that served its earlier ones, while it has a free slot.
    conversation_affinity: bool = Field(True, alias="CONVERSATION_AFFINITY")
    # How long a kept response (the Responses API's `store`) stays for its conversation to go on.
    responses_retention_days: int = Field(30, ge=1, le=3650, alias="RESPONSES_RETENTION_DAYS")
    ollama_model: str = Field("smollm2:135m", alias="OLLAMA_MODEL")
    # Optional allow-list, comma-separated; empty means every model the server has.
    ollama_models: str = Field("", alias="OLLAMA_MODELS")
    # Seconds. The total must fit inside API Gateway's 29 s integration limit.
    ollama_connect_timeout: float = Field(3.0, gt=0, alias="OLLAMA_CONNECT_TIMEOUT")
    ollama_timeout: float = Field(25.0, gt=0, le=28, alias="OLLAMA_TIMEOUT")
    # A streamed chat is not bound by API Gateway's 29 s, only by this and the function's timeout.
    ollama_stream_timeout: float = Field(120.0, gt=0, le=880, alias="OLLAMA_STREAM_TIMEOUT")
    # A model server that sends no byte for this long is unwell: the call ends and the
    # circuit breaker counts it. A deadline reached while tokens flow is the request's own.
    ollama_stall_timeout: float = Field(10.0, gt=0, le=28, alias="OLLAMA_STALL_TIMEOUT")
    # The largest request body a route reads; Lambda takes at most 6 MB per invocation, event included.
    max_request_bytes: int = Field(4_194_304, ge=1024, le=6_000_000, alias="MAX_REQUEST_BYTES")
    default_monthly_token_quota: int = Field(100_000, ge=0, alias="DEFAULT_MONTHLY_TOKEN_QUOTA")
    rate_limit_rpm: int = Field(60, ge=1, alias="RATE_LIMIT_RPM")
    # Requests per minute per user, across all their keys; 0: twice RATE_LIMIT_RPM.
    rate_limit_user_rpm: int = Field(0, ge=0, alias="RATE_LIMIT_USER_RPM")
    rate_limit_tpm: int = Field(20_000, ge=1, alias="RATE_LIMIT_TPM")
    max_concurrent_requests: int = Field(4, ge=1, le=10_000, alias="MAX_CONCURRENT_REQUESTS")  # a plan's range
    # Each model's tokenizer, as JSON: {"llama3.1:8b": "/opt/tokenizers/llama3.json"} (Hugging Face's
    # tokenizer.json): its prompts are counted by it before the model sees them, rather than in bytes.
    model_tokenizers: str = Field("", alias="MODEL_TOKENIZERS")
    # What each model's (or alias's) tokens cost, in micro-units of CURRENCY per million tokens, as
    # JSON: {"llama3.1:8b": {"input_per_million_micros": 150000, "output_per_million_micros": 600000}}.
    model_prices: str = Field("", alias="MODEL_PRICES")
    # The operator's currency, which every *_micros figure counts millionths of (ISO 4217).
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", alias="CURRENCY")
    # Plans beyond the defaults, as JSON: {"pro": {"monthly_token_quota": ..., "rate_limit_rpm": ...}, ...}
    plans: str = Field("", alias="PLANS")
    default_plan: str = Field("free", alias="DEFAULT_PLAN")
    # REDIS_URL names a node of a Redis Cluster (ElastiCache Serverless, or cluster mode enabled).
    redis_cluster: bool = Field(False, alias="REDIS_CLUSTER")
    # When Redis cannot be asked, admit requests (true) or refuse them with 503 (false).
    rate_limit_fail_open: bool = Field(True, alias="RATE_LIMIT_FAIL_OPEN")
    register_limit_per_hour: int = Field(20, ge=1, alias="REGISTER_RATE_LIMIT_PER_HOUR")
    # Failed authentications per source IP per minute before its requests get 429.
    auth_failures_per_minute: int = Field(30, ge=1, alias="AUTH_FAILURES_PER_MINUTE")
    # When set, GET /metrics wants `Authorization: Bearer <this>`; unset, it is open.
    metrics_token: str = Field("", alias="METRICS_TOKEN")
    metrics_token_secret: str = Field("", alias="METRICS_TOKEN_SECRET")
    # Where a team's or key's budget alerts go (50%, 80%, 100%) beside the template's alarm topic
    # (BUDGET_ALERT_TOPIC_ARN, which the template writes): a URL that takes a JSON POST.
    budget_alert_webhook_url: str = Field("", pattern=r"^(https?://\S+)?$", alias="BUDGET_ALERT_WEBHOOK_URL")
    # The model server's circuit breaker: this many consecutive failures open it for
    # `open_seconds`, then one probe request decides whether it closes.
    breaker_failures: int = Field(5, ge=1, alias="CIRCUIT_BREAKER_FAILURES")
    breaker_open_seconds: float = Field(15, gt=0, alias="CIRCUIT_BREAKER_OPEN_SECONDS")
    idempotency_ttl_seconds: int = Field(86_400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")
    # Single sign-on: tokens from the organisation's identity provider, when all three are set.
    jwt_issuer: str = Field("", alias="JWT_ISSUER")
    jwt_audience: str = Field("", alias="JWT_AUDIENCE")
    jwt_jwks_url: str = Field("", alias="JWT_JWKS_URL")
    jwt_plan_claim: str = Field("infergate_plan", alias="JWT_PLAN_CLAIM")
    # The plans a sign-in token's plan claim may grant, comma-separated; the default plan always.
    jwt_allowed_plans: str = Field("", alias="JWT_ALLOWED_PLANS")
    # The console's single sign-on (authorization code with PKCE, in the browser), when both are set.
    console_oidc_issuer: str = Field("", alias="CONSOLE_OIDC_ISSUER", pattern=r"^$|^https?://[^\s\"<>]+$")
    console_oidc_client_id: str = Field("", alias="CONSOLE_OIDC_CLIENT_ID", pattern=r"^[^\s\"<>]{0,200}$")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        # SAM passes unset optional parameters as empty strings: treat them as unset.
        return cls.model_validate({key: value for key, value in env.items() if value != ""})


class PlanFigures(Schema):
    """A plan's figures as PLANS gives them: each optional, whole numbers, nothing else."""

    model_config = ConfigDict(extra="forbid")

    monthly_token_quota: int | None = None
    rate_limit_rpm: int | None = None
    rate_limit_user_rpm: int | None = None
    rate_limit_tpm: int | None = None
    max_output_tokens: int | None = None
    max_api_keys: int | None = None
    max_concurrent_requests: int | None = None
    allowed_models: list[ModelName] | None = Field(None, min_length=1)  # the models (or aliases) it may use
    # Tokens a month each user of the plan may spend on each model named.
    model_quotas: dict[ModelName, Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)


class PriceEntry(Schema):
    """One model's price as MODEL_PRICES gives it: whole micros per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_million_micros: int = Field(ge=0, le=10**12, strict=True)
    output_per_million_micros: int = Field(ge=0, le=10**12, strict=True)


class ServerEntry(Schema):
    """One server as MODEL_SERVERS gives it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(pattern=r"^https?://[^\s]+$")
    kind: Literal["ollama", "openai", "vllm", "llama.cpp"] = OLLAMA
    slots: int | None = Field(None, ge=1, le=UNBOUNDED)
    weight: float = Field(1.0, gt=0, le=1000)
    models: list[str] | None = Field(None, min_length=1)
    api_key: str = ""  # for a server that wants a bearer token: keep the list in MODEL_SERVERS_SECRET
