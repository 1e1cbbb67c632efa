"""The chat flow's rules, with in-memory stand-ins for Redis, MongoDB and the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from infergate.domain.chat import RESERVATION_TTL, ChatService
from infergate.domain.ports import Completion, RateDecision, Reservation, RequestOutcome
from infergate.domain.tokens import DEFAULT_MAX_TOKENS, prompt_tokens_upper_bound
from infergate.errors import QuotaExceeded, RateLimited, RateLimiterUnavailable, UpstreamTimeout
from infergate.models.chat import ChatRequest
from infergate.models.principal import Principal

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PRINCIPAL = Principal(user_id="usr_1", key_id="key_1", plan="free", monthly_token_quota=10_000, rate_limit_rpm=2)


@dataclass
class CountingLimiter:
    calls: int = 0
    unavailable: bool = False

    def hit(self, subject: str, *, limit: int, window_ms: int) -> RateDecision:
        if self.unavailable:
            raise RateLimiterUnavailable("down")
        self.calls += 1
        return RateDecision(self.calls <= limit, limit, max(0, limit - self.calls), 30_500)


@dataclass
class MemoryLedger:
    used: int = 0
    held: dict[str, int] = field(default_factory=dict)
    log: list[RequestOutcome] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)

    def reserve(self, reservation: Reservation, *, quota: int, now: datetime) -> bool:
        if self.used + sum(self.held.values()) + reservation.tokens > quota:
            return False
        self.held[reservation.reservation_id] = reservation.tokens
        self.reservations.append(reservation)
        return True

    def settle(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        del self.held[reservation.reservation_id]
        self.used += outcome.total_tokens
        self.log.append(outcome)

    def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        del self.held[reservation.reservation_id]
        self.log.append(outcome)


@dataclass
class ScriptedModel:
    completion: Completion | None = None
    error: Exception | None = None
    calls: list[dict] = field(default_factory=list)

    def chat(self, **kwargs) -> Completion:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        assert self.completion is not None
        return self.completion


def service(model: ScriptedModel, ledger: MemoryLedger | None = None, limiter: CountingLimiter | None = None) -> ChatService:
    return ChatService(
        limiter=limiter or CountingLimiter(), ledger=ledger or MemoryLedger(), model=model,
        default_model="smollm2:135m", clock=lambda: NOW,
    )


def test_a_chat_is_charged_the_counts_the_model_reports():
    ledger = MemoryLedger()
    model = ScriptedModel(Completion("smollm2:135m", "Hello!", prompt_tokens=12, completion_tokens=3, done_reason="stop"))
    response = service(model, ledger).chat(PRINCIPAL, ChatRequest(prompt="hi", max_tokens=50), request_id="req-1")

    assert response.response == "Hello!"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (12, 3, 15)
    assert ledger.used == 15 and ledger.held == {}
    assert [(o.status, o.total_tokens, o.request_id) for o in ledger.log] == [("ok", 15, "req-1")]
    assert model.calls[0]["max_tokens"] == 50 and model.calls[0]["request_id"] == "req-1"


def test_the_reservation_covers_the_prompt_bound_plus_max_tokens_and_expires():
    ledger = MemoryLedger()
    request = ChatRequest(prompt="hi")
    service(ScriptedModel(Completion("m", "x", 1, 1, "stop")), ledger).chat(PRINCIPAL, request, request_id="r")
    reservation = ledger.reservations[0]
    assert reservation.tokens == prompt_tokens_upper_bound(request.conversation()) + DEFAULT_MAX_TOKENS
    assert reservation.expires_at == NOW + RESERVATION_TTL
    assert reservation.period == "2026-11"


def test_a_failed_model_call_releases_the_reservation_and_costs_nothing():
    ledger = MemoryLedger()
    with pytest.raises(UpstreamTimeout):
        service(ScriptedModel(error=UpstreamTimeout("slow")), ledger).chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
    assert ledger.used == 0 and ledger.held == {}
    assert [(o.status, o.total_tokens) for o in ledger.log] == [("upstream_timeout", 0)]


def test_an_unexpected_error_also_releases_the_reservation():
    ledger = MemoryLedger()
    with pytest.raises(KeyError):
        service(ScriptedModel(error=KeyError("bug")), ledger).chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
    assert ledger.held == {} and ledger.log[0].status == "internal_error"


def test_a_request_that_cannot_fit_the_quota_is_refused_before_the_model_is_asked():
    model = ScriptedModel(Completion("m", "x", 1, 1, "stop"))
    ledger = MemoryLedger(used=PRINCIPAL.monthly_token_quota - 10)
    with pytest.raises(QuotaExceeded):
        service(model, ledger).chat(PRINCIPAL, ChatRequest(prompt="hi", max_tokens=100), request_id="r")
    assert model.calls == []


def test_over_the_rate_limit_is_refused_with_retry_after():
    limiter = CountingLimiter()
    chat = service(ScriptedModel(Completion("m", "x", 1, 1, "stop")), limiter=limiter)
    for _ in range(PRINCIPAL.rate_limit_rpm):
        chat.chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
    with pytest.raises(RateLimited) as refused:
        chat.chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
    assert refused.value.headers["Retry-After"] == "31"


def test_an_unreachable_rate_limiter_admits_the_request():
    ledger = MemoryLedger()
    service(ScriptedModel(Completion("m", "x", 1, 1, "stop")), ledger, CountingLimiter(unavailable=True)).chat(
        PRINCIPAL, ChatRequest(prompt="hi"), request_id="r"
    )
    assert ledger.used == 2


def test_a_prompt_count_the_model_left_out_is_charged_at_the_reserved_bound():
    ledger = MemoryLedger()
    request = ChatRequest(prompt="hello there")
    response = service(ScriptedModel(Completion("m", "x", None, 4, "stop")), ledger).chat(PRINCIPAL, request, request_id="r")
    bound = prompt_tokens_upper_bound(request.conversation())
    assert response.usage.prompt_tokens == bound
    assert ledger.used == bound + 4


def test_the_requested_model_is_used_else_the_default():
    model = ScriptedModel(Completion("m", "x", 1, 1, "stop"))
    chat = service(model)
    chat.chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
    chat.chat(PRINCIPAL, ChatRequest(prompt="hi", model="tiny:latest"), request_id="r")
    assert [call["model"] for call in model.calls] == ["smollm2:135m", "tiny:latest"]


def test_when_releasing_fails_too_the_original_error_is_reported():
    class BrokenLedger(MemoryLedger):
        def release(self, reservation, outcome):
            raise ConnectionError("database gone")

    with pytest.raises(UpstreamTimeout):
        service(ScriptedModel(error=UpstreamTimeout("slow")), BrokenLedger()).chat(PRINCIPAL, ChatRequest(prompt="hi"), request_id="r")
