"""Settings read once from the environment (each also a SAM parameter), and what is parsed
from them: the plans (PLANS and the figures of the default plan), the pool of model servers
(MODEL_SERVERS, or OLLAMA_URL alone), the model aliases (MODEL_ALIASES) and prices (MODEL_PRICES).

`Settings` (infergate.settings_model) declares them with pydantic. A function instance checks
its own at init (`checked`) with the validator pydantic compiles from that declaration, kept as
data in settings.schema.json, which pydantic's core runs without pydantic itself: importing
pydantic and building the validator cost each function's cold start more than the rest of its
init. `make settings-schema` writes the file; tests/build/test_settings_schema.py fails when it
is not what pydantic compiles now.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from infergate.domain.plans import Plan, PlanCatalog

if TYPE_CHECKING:
    from infergate.domain.pool import Server
    from infergate.domain.prices import PriceList
    from infergate.settings_model import Settings

# Settings' validator as pydantic compiles it: the model's fields (core schema) and its config.
SCHEMA_FILE = Path(__file__).with_name("settings.schema.json")


def __getattr__(name: str) -> Any:
    # `from infergate.config import Settings` imports pydantic only when something asks for it.
    if name == "Settings":
        from infergate.settings_model import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SettingsRules:
    """What the settings say beyond their values: `Settings` and `CheckedSettings` alike."""

    if TYPE_CHECKING:  # Settings' fields (declared here, pydantic would take them for fields of its own)
        jwt_issuer: str
        jwt_audience: str
        jwt_jwks_url: str
        ollama_models: str

    @property
    def single_sign_on(self) -> bool:
        return bool(self.jwt_issuer and self.jwt_audience and self.jwt_jwks_url)

    def allowed_models(self) -> frozenset[str] | None:
        names = {name.strip() for name in self.ollama_models.split(",") if name.strip()}
        return frozenset(names) if names else None


class CheckedSettings(SettingsRules):
    """The settings a function instance runs with: Settings' fields, by name, as Settings'
    validator gives them. Read-only; never shown (a setting may hold a credential)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read-only")

    def __repr__(self) -> str:
        return "CheckedSettings(...)"

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...


class InvalidSettings(ValueError):
    """A setting out of its range, or a plan, pool or alias list that cannot be: named, with its
    range, never with its value (a setting may hold a credential)."""


def checked(env: Mapping[str, str] | None = None) -> CheckedSettings:
    """The settings, checked whole before anything uses them: each in its range, and the plans and
    aliases they describe. A function's init fails on InvalidSettings, and `make run` will not start."""
    from pydantic_core import SchemaValidator, ValidationError

    env = os.environ if env is None else env
    stored = json.loads(SCHEMA_FILE.read_text())
    try:
        # SAM passes unset optional parameters as empty strings: treat them as unset (Settings.from_env).
        values, _, _ = SchemaValidator(stored["schema"], stored["config"]).validate_python(
            {key: value for key, value in env.items() if value != ""})
    except ValidationError as error:
        problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].lower()}" for e in error.errors()]
        raise InvalidSettings("; ".join(problems)) from None
    settings = CheckedSettings(values)
    try:
        plan_catalog(settings)
        aliases(settings)
        tokenizer_paths(settings)
        price_list(settings)
    except ValueError as error:
        raise InvalidSettings(str(error)) from None
    return settings


def plan_catalog(settings: Settings | CheckedSettings) -> PlanCatalog:
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
        from pydantic import TypeAdapter

        from infergate.settings_model import PlanFigures

        try:
            for name, given in TypeAdapter(dict[str, PlanFigures]).validate_json(settings.plans).items():
                figures = given.model_dump(exclude_none=True)
                models, quotas = figures.pop("allowed_models", None), figures.pop("model_quotas", None)
                plan = plans[name].with_figures(figures) if name in plans else Plan(name=name, **figures)
                plan = replace(plan, allowed_models=tuple(models)) if models else plan
                plans[name] = replace(plan, model_quotas=tuple(sorted(quotas.items()))) if quotas else plan
        except (ValueError, TypeError) as error:  # pydantic's ValidationError and InvalidPlan are ValueErrors
            raise ValueError(f"PLANS is not valid: {error}") from None
    return PlanCatalog(plans, settings.default_plan)


@dataclass(frozen=True)
class ServerAddress:
    """How to reach one server of the pool: never logged, never shown (it may hold credentials)."""

    server: Server
    url: str = field(repr=False)
    api_key: str = field(default="", repr=False)


def pool(settings: Settings | CheckedSettings, listed: str) -> list[ServerAddress]:
    """The servers: `listed` (MODEL_SERVERS, or the list MODEL_SERVERS_SECRET keeps) if given, else
    the one at OLLAMA_URL, which the gateway never holds back (its slots are Ollama's business)."""
    from infergate.domain.pool import UNBOUNDED, Server

    if not listed.strip():
        return [ServerAddress(Server("ollama"), settings.ollama_url)]
    from pydantic import TypeAdapter

    from infergate.settings_model import ServerEntry

    try:
        entries = TypeAdapter(list[ServerEntry]).validate_json(listed)
    except ValueError as error:
        # pydantic's message names the entry and field at fault, never a value (a URL may hold a password).
        raise ValueError(f"MODEL_SERVERS is not valid: {_fields_at_fault(error)}") from None
    names = [entry.name for entry in entries]
    if not entries or len(set(names)) != len(names):
        raise ValueError("MODEL_SERVERS is not valid: it must list at least one server, each under its own name")
    return [ServerAddress(Server(entry.name, entry.kind, entry.slots or UNBOUNDED, entry.weight,
                                 tuple(entry.models) if entry.models else None),
                          entry.url, entry.api_key) for entry in entries]


def aliases(settings: Settings | CheckedSettings) -> dict[str, list[str]]:
    if not settings.model_aliases.strip():
        return {}
    from pydantic import Field, TypeAdapter

    try:
        return TypeAdapter(dict[str, Annotated[list[str], Field(min_length=1)]]).validate_json(settings.model_aliases)
    except ValueError as error:
        raise ValueError(f"MODEL_ALIASES is not valid: {error}") from None


def price_list(settings: Settings | CheckedSettings) -> PriceList:
    """MODEL_PRICES: each model's or alias's price per million tokens, in whole micros."""
    from infergate.domain.prices import Price, PriceList

    if not settings.model_prices.strip():
        return PriceList()
    from pydantic import TypeAdapter

    from infergate.settings_model import PriceEntry

    try:
        entries = TypeAdapter(dict[str, PriceEntry]).validate_json(settings.model_prices)
    except ValueError as error:
        raise ValueError(f"MODEL_PRICES is not valid: {_fields_at_fault(error)}") from None
    return PriceList({model: Price(entry.input_per_million_micros, entry.output_per_million_micros)
                      for model, entry in entries.items()})


def tokenizer_paths(settings: Settings | CheckedSettings) -> dict[str, str]:
    """MODEL_TOKENIZERS: each model (`name:tag`) and the file of its tokenizer, which must be readable."""
    if not settings.model_tokenizers.strip():
        return {}
    from pydantic import Field, TypeAdapter

    from infergate.domain.model_names import canonical

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
