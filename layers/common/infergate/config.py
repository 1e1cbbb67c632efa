"""Settings read once from the environment (each also a SAM parameter), and what is parsed
from them: the plans (PLANS and the figures of the default plan), the pool of model servers
(MODEL_SERVERS, or OLLAMA_URL alone) and the model aliases (MODEL_ALIASES)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from infergate.domain.plans import Plan, PlanCatalog
from infergate.domain.pool import OLLAMA, UNBOUNDED, Server
from infergate.schemas.base import Schema


class Settings(Schema):
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

    @property
    def single_sign_on(self) -> bool:
        return bool(self.jwt_issuer and self.jwt_audience and self.jwt_jwks_url)

    def allowed_models(self) -> frozenset[str] | None:
        names = {name.strip() for name in self.ollama_models.split(",") if name.strip()}
        return frozenset(names) if names else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        # SAM passes unset optional parameters as empty strings: treat them as unset.
        return cls.model_validate({key: value for key, value in env.items() if value != ""})


class InvalidSettings(ValueError):
    """A setting out of its range, or a plan, pool or alias list that cannot be: named, with its
    range, never with its value (a setting may hold a credential)."""


def checked(env: Mapping[str, str] | None = None) -> Settings:
    """The settings, checked whole before anything uses them: each in its range, and the plans and
    aliases they describe. A function's init fails on InvalidSettings, and `make run` will not start."""
    try:
        settings = Settings.from_env(env)
    except ValidationError as error:
        problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].lower()}" for e in error.errors()]
        raise InvalidSettings("; ".join(problems)) from None
    try:
        plan_catalog(settings)
        aliases(settings)
        tokenizer_paths(settings)
    except ValueError as error:
        raise InvalidSettings(str(error)) from None
    return settings


class _PlanFigures(Schema):
    """A plan's figures as PLANS gives them: each optional, whole numbers, nothing else."""

    model_config = ConfigDict(extra="forbid")

    monthly_token_quota: int | None = None
    rate_limit_rpm: int | None = None
    rate_limit_user_rpm: int | None = None
    rate_limit_tpm: int | None = None
    max_output_tokens: int | None = None
    max_api_keys: int | None = None
    max_concurrent_requests: int | None = None


def plan_catalog(settings: Settings) -> PlanCatalog:
    """The plans: `free` from the settings' figures, `pro` built in, and what PLANS adds or changes."""
    plans = {
        "free": Plan(name="free", monthly_token_quota=settings.default_monthly_token_quota,
                     rate_limit_rpm=settings.rate_limit_rpm, rate_limit_user_rpm=settings.rate_limit_user_rpm,
                     rate_limit_tpm=settings.rate_limit_tpm, max_output_tokens=1024,
                     max_concurrent_requests=settings.max_concurrent_requests),
        "pro": Plan(name="pro", monthly_token_quota=5_000_000, rate_limit_rpm=600, rate_limit_user_rpm=1200,
                    rate_limit_tpm=200_000, max_output_tokens=4096, max_concurrent_requests=16),
    }
    if settings.plans.strip():
        try:
            for name, given in TypeAdapter(dict[str, _PlanFigures]).validate_json(settings.plans).items():
                figures = given.model_dump(exclude_none=True)
                plans[name] = plans[name].with_figures(figures) if name in plans else Plan(name=name, **figures)
        except (ValueError, TypeError) as error:  # pydantic's ValidationError and InvalidPlan are ValueErrors
            raise ValueError(f"PLANS is not valid: {error}") from None
    return PlanCatalog(plans, settings.default_plan)


class _ServerEntry(Schema):
    """One server as MODEL_SERVERS gives it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(pattern=r"^https?://[^\s]+$")
    kind: Literal["ollama", "openai", "vllm", "llama.cpp"] = OLLAMA
    slots: int | None = Field(None, ge=1, le=UNBOUNDED)
    weight: float = Field(1.0, gt=0, le=1000)
    models: list[str] | None = Field(None, min_length=1)
    api_key: str = ""  # for a server that wants a bearer token: keep the list in MODEL_SERVERS_SECRET


@dataclass(frozen=True)
class ServerAddress:
    """How to reach one server of the pool: never logged, never shown (it may hold credentials)."""

    server: Server
    url: str = field(repr=False)
    api_key: str = field(default="", repr=False)


def pool(settings: Settings, listed: str) -> list[ServerAddress]:
    """The servers: `listed` (MODEL_SERVERS, or the list MODEL_SERVERS_SECRET keeps) if given, else
    the one at OLLAMA_URL, which the gateway never holds back (its slots are Ollama's business)."""
    if not listed.strip():
        return [ServerAddress(Server("ollama"), settings.ollama_url)]
    try:
        entries = TypeAdapter(list[_ServerEntry]).validate_json(listed)
    except ValueError as error:
        # pydantic's message names the entry and field at fault, never a value (a URL may hold a password).
        raise ValueError(f"MODEL_SERVERS is not valid: {_fields_at_fault(error)}") from None
    names = [entry.name for entry in entries]
    if not entries or len(set(names)) != len(names):
        raise ValueError("MODEL_SERVERS is not valid: it must list at least one server, each under its own name")
    return [ServerAddress(Server(entry.name, entry.kind, entry.slots or UNBOUNDED, entry.weight,
                                 tuple(entry.models) if entry.models else None),
                          entry.url, entry.api_key) for entry in entries]


def aliases(settings: Settings) -> dict[str, list[str]]:
    if not settings.model_aliases.strip():
        return {}
    try:
        return TypeAdapter(dict[str, Annotated[list[str], Field(min_length=1)]]).validate_json(settings.model_aliases)
    except ValueError as error:
        raise ValueError(f"MODEL_ALIASES is not valid: {error}") from None


def tokenizer_paths(settings: Settings) -> dict[str, str]:
    """MODEL_TOKENIZERS: each model (`name:tag`) and the file of its tokenizer, which must be readable."""
    from infergate.domain.model_policy import canonical

    if not settings.model_tokenizers.strip():
        return {}
    try:
        named = TypeAdapter(dict[str, Annotated[str, Field(min_length=1)]]).validate_json(settings.model_tokenizers)
    except ValueError:
        raise ValueError("MODEL_TOKENIZERS is not valid: it must be a JSON object of model names to file paths") from None
    unreadable = sorted(model for model, path in named.items() if not os.access(path, os.R_OK) or os.path.isdir(path))
    if unreadable:
        raise ValueError(f"MODEL_TOKENIZERS is not valid: no readable file for {', '.join(unreadable)}")
    return {canonical(model): path for model, path in named.items()}


def _fields_at_fault(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if errors is None:
        return "not a JSON list"
    return "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors(include_input=False))
