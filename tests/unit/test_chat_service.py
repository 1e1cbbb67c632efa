"""The chat flow's rules, with in-memory stand-ins for Redis, MongoDB and the model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from infergate.domain.admission import AdmissionControl
from infergate.domain.chat import RESERVATION_TTL, ChatService, ChatTask
from infergate.domain.messages import Message
from infergate.domain.models import ModelPolicy
from infergate.domain.ports import (
    AdmissionDecision,
    Completion,
    Conclusion,
    LimitState,
    ModelEntry,
    PeriodUsage,
    RequestOutcome,
    Reservation,
)
from infergate.domain.principal import Principal
from infergate.domain.tokens import DEFAULT_MAX_TOKENS, prompt_tokens_upper_bound
from infergate.errors import (
    ModelNotFound,
    PromptTooLarge,
    QuotaExceeded,
    QuotaHeldInFlight,
    RateLimited,
    RateLimiterUnavailable,
    ServiceUnavailable,
    TooManyConcurrentRequests,
    UpstreamError,
    UpstreamTimeout,
)
from infergate.models.chat import ChatRequest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PRINCIPAL = Principal(user_id="usr_1", key_id="key_1", plan="free", monthly_token_quota=10_000, rate_limit_rpm=2,
                      rate_limit_tpm=5_000, max_output_tokens=1024)


def task(prompt: str = "hi", **fields) -> ChatTask:
    return ChatRequest(prompt=prompt, **fields).task()


@dataclass
class MemoryAdmissions:
    """Counts per key like the Redis script, without windows; the breaker is open when told."""

    counted: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable: bool = False
    breaker_open: bool = False
    conclusions: list[Conclusion] = field(default_factory=list)
    in_flight: dict[str, set[str]] = field(default_factory=dict)  # slots taken, by their key

    def admit(self, limits, *, ticket, guarded, key_id="", slots=None):
        if self.unavailable:
            raise RateLimiterUnavailable("down")
        if guarded and self.breaker_open:
            return AdmissionDecision(False, (), 0, breaker_retry_ms=6_500)
        used = [sum(self.counted.get(limit.key, {}).values()) for limit in limits]
        allowed = all(u + limit.cost <= limit.limit for u, limit in zip(used, limits, strict=True))
        slots_full = allowed and slots is not None and len(self.in_flight.get(slots.key, ())) >= slots.limit
        allowed = allowed and not slots_full
        if allowed:
            for limit in limits:
                self.counted.setdefault(limit.key, {})[ticket] = limit.cost
            if slots is not None:
                self.in_flight.setdefault(slots.key, set()).add(ticket)
        states = tuple(LimitState(limit.limit, limit.limit - u - (limit.cost if allowed else 0), 30_500)
                       for u, limit in zip(used, limits, strict=True))
        return AdmissionDecision(allowed, states, 0 if allowed or slots_full else 30_500, slots_full=slots_full)

    def conclude(self, conclusion: Conclusion):
        self.conclusions.append(conclusion)
        if conclusion.slots is not None:
            self.in_flight.get(conclusion.slots.key, set()).discard(conclusion.ticket)
        if conclusion.token_limit is not None:
            if conclusion.ticket in self.counted.get(conclusion.token_limit.key, {}):  # as the script: only what it counted
                self.counted[conclusion.token_limit.key][conclusion.ticket] = conclusion.tokens

    def model_reports(self) -> list[bool | None]:
        return [conclusion.model_healthy for conclusion in self.conclusions]


@dataclass
class MemoryLedger:
    used: int = 0
    held: dict[str, int] = field(default_factory=dict)
    log: list[tuple[RequestOutcome, int]] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)

    def reserve(self, reservation, *, minimum, quota, now):
        room = quota - self.used - sum(self.held.values())
        if room < minimum:
            return None
        granted = replace(reservation, tokens=min(reservation.tokens, room))
        self.held[granted.reservation_id] = granted.tokens
        self.reservations.append(granted)
        return granted

    def settle(self, reservation, outcome, *, quota):
        del self.held[reservation.reservation_id]
        charged = min(outcome.total_tokens, quota - self.used - sum(self.held.values()))
        self.used += charged
        self.log.append((outcome, charged))
        return charged

    def release(self, reservation, outcome):
        del self.held[reservation.reservation_id]
        self.log.append((outcome, 0))

    def usage(self, user_id, period, *, now):
        return PeriodUsage(period, self.used, sum(self.held.values()), len(self.log), {}, {})


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


@dataclass
class FixedCatalog:
    names: list[str] | None = field(default_factory=lambda: ["smollm2:135m", "tiny:latest"])

    def models(self):
        return None if self.names is None else [ModelEntry(name, None) for name in self.names]


OK = Completion("smollm2:135m", "Hello!", prompt_tokens=12, completion_tokens=3, done_reason="stop")


def service(model, ledger=None, admissions=None, *, fail_open=True, catalog=None, allowed=None) -> ChatService:
    return ChatService(
        admission=AdmissionControl(admissions or MemoryAdmissions(), fail_open=fail_open, lease_seconds=30),
        ledger=ledger or MemoryLedger(),
        model=model, models=ModelPolicy(catalog or FixedCatalog(), default="smollm2:135m", allowed=allowed), clock=lambda: NOW,
    )


def test_a_chat_is_charged_the_counts_the_model_reports():
    ledger, admissions = MemoryLedger(), MemoryAdmissions()
    model = ScriptedModel(OK)
    response = service(model, ledger, admissions).chat(PRINCIPAL, task("hi", max_tokens=50), request_id="req-1")

    assert response.content == "Hello!"
    assert (response.prompt_tokens, response.completion_tokens, response.total_tokens) == (12, 3, 15)
    assert ledger.used == 15 and ledger.held == {}
    assert [(o.status, charged, o.request_id) for o, charged in ledger.log] == [("ok", 15, "req-1")]
    assert model.calls[0]["max_tokens"] == 50 and model.calls[0]["request_id"] == "req-1"
    # Tokens per minute count what was used, not what was feared.
    assert list(admissions.counted["tpm:usr_1"].values()) == [15]


def test_the_reservation_covers_the_prompt_bound_plus_max_tokens_and_expires():
    ledger = MemoryLedger()
    request = task()
    service(ScriptedModel(OK), ledger).chat(PRINCIPAL, request, request_id="r")
    reservation = ledger.reservations[0]
    assert reservation.tokens == prompt_tokens_upper_bound(request.messages) + DEFAULT_MAX_TOKENS
    assert reservation.expires_at == NOW + RESERVATION_TTL
    assert reservation.period == "2026-11"


def test_max_tokens_is_capped_by_what_remains_of_the_quota():
    ledger = MemoryLedger(used=PRINCIPAL.monthly_token_quota - 300)
    model = ScriptedModel(OK)
    request = task("hi", max_tokens=1000)
    service(model, ledger).chat(PRINCIPAL, request, request_id="r")
    assert model.calls[0]["max_tokens"] == 300 - prompt_tokens_upper_bound(request.messages)


def test_max_tokens_is_capped_by_the_plan():
    model = ScriptedModel(OK)
    small = replace(PRINCIPAL, max_output_tokens=100)
    service(model).chat(small, task("hi", max_tokens=4000), request_id="r")
    assert model.calls[0]["max_tokens"] == 100


def test_quota_exceeded_only_when_nothing_fits():
    model = ScriptedModel(OK)
    bound = prompt_tokens_upper_bound(task().messages)
    ledger = MemoryLedger(used=PRINCIPAL.monthly_token_quota - bound - 1)
    service(model, ledger).chat(PRINCIPAL, task("hi", max_tokens=500), request_id="r")
    assert model.calls[-1]["max_tokens"] == 1
    with pytest.raises(QuotaExceeded):
        service(model, MemoryLedger(used=PRINCIPAL.monthly_token_quota - bound)).chat(
            PRINCIPAL, task(), request_id="r")
    assert len(model.calls) == 1


def test_a_prompt_larger_than_the_plan_allows_per_request_is_refused():
    tiny = replace(PRINCIPAL, rate_limit_tpm=50)
    with pytest.raises(PromptTooLarge):
        service(ScriptedModel(OK)).chat(tiny, task("x" * 100), request_id="r")


def test_a_failed_model_call_releases_the_reservation_and_costs_nothing():
    ledger, admissions = MemoryLedger(), MemoryAdmissions()
    with pytest.raises(UpstreamTimeout):
        service(ScriptedModel(error=UpstreamTimeout("slow")), ledger, admissions).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.used == 0 and ledger.held == {}
    assert [(o.status, charged) for o, charged in ledger.log] == [("upstream_timeout", 0)]
    assert list(admissions.counted["tpm:usr_1"].values()) == [0]


def test_an_unexpected_error_also_releases_the_reservation():
    ledger = MemoryLedger()
    with pytest.raises(KeyError):
        service(ScriptedModel(error=KeyError("bug")), ledger).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.held == {} and ledger.log[0][0].status == "internal_error"


def test_when_releasing_fails_too_the_original_error_is_reported():
    class BrokenLedger(MemoryLedger):
        def release(self, reservation, outcome):
            raise ConnectionError("database gone")

    with pytest.raises(UpstreamTimeout):
        service(ScriptedModel(error=UpstreamTimeout("slow")), BrokenLedger()).chat(PRINCIPAL, task(), request_id="r")


def test_over_the_request_limit_is_refused_with_retry_after_and_limit_headers():
    chat = service(ScriptedModel(OK))
    for _ in range(PRINCIPAL.rate_limit_rpm):
        chat.chat(PRINCIPAL, task(), request_id="r")
    with pytest.raises(RateLimited) as refused:
        chat.chat(PRINCIPAL, task(), request_id="r")
    assert refused.value.headers["Retry-After"] == "31"
    assert refused.value.headers["X-RateLimit-Limit"] == "2"
    assert refused.value.headers["X-RateLimit-Remaining"] == "0"
    assert "2 requests per minute" in refused.value.message


def test_over_the_token_limit_is_refused_before_anything_is_reserved():
    admissions, ledger = MemoryAdmissions(), MemoryLedger()
    admissions.counted["tpm:usr_1"] = {"earlier": PRINCIPAL.rate_limit_tpm - 10}
    with pytest.raises(RateLimited) as refused:
        service(ScriptedModel(OK), ledger, admissions).chat(PRINCIPAL, task(), request_id="r")
    assert "tokens per minute" in refused.value.message
    assert ledger.reservations == []


def test_the_admission_is_reported_for_the_response_headers():
    seen = []
    service(ScriptedModel(OK)).chat(PRINCIPAL, task(), request_id="r", on_admitted=seen.append)
    headers = seen[0].headers()
    assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Remaining"] == "1"
    assert headers["X-RateLimit-Limit-Tokens"] == "5000"


def test_an_unreachable_rate_limiter_admits_when_failing_open_and_refuses_when_not():
    ledger = MemoryLedger()
    service(ScriptedModel(OK), ledger, MemoryAdmissions(unavailable=True)).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.used == 15
    with pytest.raises(ServiceUnavailable):
        service(ScriptedModel(OK), ledger, MemoryAdmissions(unavailable=True), fail_open=False).chat(
            PRINCIPAL, task(), request_id="r")


def test_a_prompt_count_the_model_left_out_is_charged_at_the_reserved_bound():
    ledger = MemoryLedger()
    request = task("hello there")
    response = service(ScriptedModel(Completion("m", "x", None, 4, "stop")), ledger).chat(PRINCIPAL, request, request_id="r")
    bound = prompt_tokens_upper_bound(request.messages)
    assert response.prompt_tokens == bound
    assert ledger.used == bound + 4


def test_the_requested_model_is_used_else_the_default():
    model = ScriptedModel(OK)
    chat = service(model, admissions=MemoryAdmissions())
    chat.chat(PRINCIPAL, task(), request_id="r")
    chat.chat(PRINCIPAL, task("hi", model="tiny:latest"), request_id="r")
    assert [call["model"] for call in model.calls] == ["smollm2:135m", "tiny:latest"]


def test_an_unknown_or_disallowed_model_is_refused_before_anything_is_held():
    ledger, admissions, model = MemoryLedger(), MemoryAdmissions(), ScriptedModel(OK)
    with pytest.raises(ModelNotFound, match="ghost"):
        service(model, ledger, admissions).chat(PRINCIPAL, task("hi", model="ghost"), request_id="r")
    with pytest.raises(ModelNotFound, match="tiny"):
        service(model, ledger, admissions, allowed=frozenset({"smollm2:135m"})).chat(
            PRINCIPAL, task("hi", model="tiny"), request_id="r")
    assert ledger.reservations == [] and model.calls == []
    assert set(admissions.counted["tpm:usr_1"].values()) == {0}  # admitted, then refunded


def test_a_bare_model_name_means_its_latest_tag():
    model = ScriptedModel(OK)
    service(model).chat(PRINCIPAL, task("hi", model="tiny"), request_id="r")
    assert model.calls[0]["model"] == "tiny"


def test_when_the_server_cannot_list_its_models_the_call_decides():
    model = ScriptedModel(OK)
    service(model, catalog=FixedCatalog(names=None)).chat(PRINCIPAL, task("hi", model="new:1b"), request_id="r")
    assert model.calls[0]["model"] == "new:1b"


def test_an_open_breaker_refuses_at_once_without_holding_or_counting_anything():
    ledger, admissions, model = MemoryLedger(), MemoryAdmissions(breaker_open=True), ScriptedModel(OK)
    with pytest.raises(ServiceUnavailable) as refused:
        service(model, ledger, admissions).chat(PRINCIPAL, task(), request_id="r")
    assert refused.value.headers["Retry-After"] == "7"
    assert ledger.reservations == [] and model.calls == []
    assert admissions.counted == {} and admissions.conclusions == []


def test_the_breaker_hears_of_backend_failures_but_not_of_bad_requests():
    admissions, caller = MemoryAdmissions(), replace(PRINCIPAL, rate_limit_rpm=10)
    service(ScriptedModel(OK), admissions=admissions).chat(caller, task(), request_id="r")
    for error in (UpstreamError("down"), ModelNotFound("gone")):
        with pytest.raises(type(error)):
            service(ScriptedModel(error=error), admissions=admissions).chat(caller, task(), request_id="r")
    bound = prompt_tokens_upper_bound(task().messages)
    with pytest.raises(QuotaExceeded):
        service(ScriptedModel(OK), MemoryLedger(used=PRINCIPAL.monthly_token_quota - bound), admissions).chat(
            caller, task(), request_id="r")
    # Answered, failed, refused the request (healthy), never asked.
    assert admissions.model_reports() == [True, False, True, None]


def test_options_reach_the_model():
    model = ScriptedModel(OK)
    options = ChatTask(messages=[Message(role="user", content="hi")], options={"temperature": 0.1, "stop": ["\n"]})
    service(model).chat(PRINCIPAL, options, request_id="r")
    assert model.calls[0]["options"] == {"temperature": 0.1, "stop": ["\n"]}


def test_a_user_has_as_many_requests_in_flight_as_the_plan_allows_and_each_exit_frees_its_slot():
    admissions = MemoryAdmissions()
    two = replace(PRINCIPAL, max_concurrent_requests=2, rate_limit_rpm=100)
    held = []

    class Holding:
        """A model that, while answering, asks for another chat of the same user."""

        def chat(self, **kwargs):
            held.append(kwargs["request_id"])
            if len(held) < 3:
                service(self, admissions=admissions).chat(two, task("again"), request_id=f"nested-{len(held)}")
            return OK

    with pytest.raises(TooManyConcurrentRequests) as refused:
        service(Holding(), admissions=admissions).chat(two, task(), request_id="outer")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    assert held == ["outer", "nested-1"], "the third request in flight was refused before reaching the model"
    assert admissions.in_flight["slots:usr_1"] == set(), "every slot came back, the refused request's too"

    failures = [ScriptedModel(error=UpstreamError("down")), ScriptedModel(error=RuntimeError("bug")),
                ScriptedModel(error=ModelNotFound.naming("x"))]
    for model in failures:
        with pytest.raises(Exception):  # noqa: B017 - each failure has its own test; here only the slot matters
            service(model, admissions=admissions).chat(two, task(), request_id="r")
    with pytest.raises(QuotaExceeded):
        service(ScriptedModel(OK), MemoryLedger(used=PRINCIPAL.monthly_token_quota), admissions).chat(
            two, task(), request_id="r")
    assert admissions.in_flight["slots:usr_1"] == set()


def test_a_spent_quota_says_when_the_month_resets():
    bound = prompt_tokens_upper_bound(task().messages)
    with pytest.raises(QuotaExceeded) as refused:
        service(ScriptedModel(OK), MemoryLedger(used=PRINCIPAL.monthly_token_quota - bound)).chat(
            PRINCIPAL, task(), request_id="r")
    until_december = int((datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds())
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == str(until_december)


def test_a_quota_held_by_requests_in_flight_is_not_called_spent():
    ledger = MemoryLedger(used=100, held={"chat_in_flight": PRINCIPAL.monthly_token_quota - 100})
    with pytest.raises(QuotaHeldInFlight) as refused:
        service(ScriptedModel(OK), ledger).chat(PRINCIPAL, task(), request_id="r")
    assert refused.value.code == "quota_held_in_flight" and refused.value.headers["Retry-After"] == "2"


def test_an_answer_whose_charge_the_ledger_cannot_confirm_is_still_given():
    class HungOnSettle(MemoryLedger):
        def settle(self, reservation, outcome, *, quota):
            raise ServiceUnavailable("The database did not answer in time; retry shortly.")

    ledger, admissions = HungOnSettle(), MemoryAdmissions()
    result = service(ScriptedModel(OK), ledger, admissions).chat(PRINCIPAL, task("hi"), request_id="r")
    assert (result.content, result.total_tokens) == ("Hello!", 15), "charged as far as the caller can know"
    assert list(admissions.counted["tpm:usr_1"].values()) == [15]


def _forced(*names: str) -> ChatTask:
    from infergate.domain.messages import Tool
    from infergate.domain.tools import tool_use

    tools = [Tool(name, "", {"type": "object", "properties": {"x": {"type": "integer"}}}) for name in names]
    return replace(task("hi"), tools=tool_use(tools, "required"))


@pytest.mark.parametrize(("names", "answer"), [(("one",), '{"x": 1'), (("one", "two"), "[1, 2]")])
def test_a_forced_call_the_answer_does_not_make_is_refused_and_charged(names, answer):
    ledger = MemoryLedger()
    model = ScriptedModel(Completion("smollm2:135m", answer, prompt_tokens=40, completion_tokens=200, done_reason="length"))
    with pytest.raises(UpstreamError) as failed:
        service(model, ledger).chat(PRINCIPAL, _forced(*names), request_id="r")
    assert not failed.value.server_unwell, "the model's answer, not the server's health"
    assert ledger.used == 240 and [charged for _, charged in ledger.log] == [240], "the model's work is paid for"
    assert "240 tokens used before it ended were charged" in failed.value.message
