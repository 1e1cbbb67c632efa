"""Inference's rules (a chat, metered: admitted, held, charged or released), with in-memory
stand-ins for Redis, MongoDB and the model server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from infergate.api.chat import task as chat_task
from infergate.api.errors import headers_of, rate_limit_headers, status_for
from infergate.domain.admission import Gatekeeper
from infergate.domain.dispatch import Dispatcher
from infergate.domain.errors import (
    AnswerCutOff,
    ModelNotFound,
    PromptTooLarge,
    QuotaExceeded,
    QuotaHeldInFlight,
    RateLimited,
    ServiceUnavailable,
    TooManyConcurrentRequests,
    UpstreamError,
    UpstreamTimeout,
)
from infergate.domain.inference import ChatTask, InferenceService
from infergate.domain.messages import Message
from infergate.domain.meter import RESERVATION_TTL, Meter
from infergate.domain.model_policy import ModelPolicy
from infergate.domain.model_server import Completion
from infergate.domain.plans import Plan
from infergate.domain.pool import Server
from infergate.domain.principal import Principal
from infergate.domain.tokens import DEFAULT_MAX_TOKENS, prompt_tokens_upper_bound
from infergate.schemas.chat import ChatRequest
from tests.support.fakes import FixedCatalog, MemoryLedger, MemoryLimitStore, RecordingTelemetry, ScriptedServer

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PRINCIPAL = Principal(user_id="usr_1", key_id="key_1", plan=Plan(
    name="free", monthly_token_quota=10_000, rate_limit_rpm=2, rate_limit_tpm=5_000, max_output_tokens=1024))


def task(prompt: str = "hi", **fields) -> ChatTask:
    return chat_task(ChatRequest(prompt=prompt, **fields))


def with_plan(principal: Principal, **figures: int) -> Principal:
    """`principal`, on their plan with `figures` set otherwise."""
    return replace(principal, plan=replace(principal.plan, **figures))


OK = Completion("smollm2:135m", "Hello!", prompt_tokens=12, completion_tokens=3, done_reason="stop")


def service(server, ledger=None, limits=None, *, fail_open=True, catalog=None, allowed=None,
            telemetry=None, servers=None, aliases=None) -> InferenceService:
    """Inference over in-memory stores: one model server (`server`, named "ollama", as OLLAMA_URL
    alone configures it), or a pool (`servers`, by name, each with its Server)."""
    telemetry, limits = telemetry or RecordingTelemetry(), limits or MemoryLimitStore()
    pool = servers or {"ollama": (Server("ollama"), server)}
    gatekeeper = Gatekeeper(limits, fail_open=fail_open, lease_seconds=30, telemetry=telemetry)
    models = ModelPolicy([config for config, _ in pool.values()], catalog or FixedCatalog(servers=tuple(pool)),
                         default="smollm2:135m", allowed=allowed, aliases=aliases)
    dispatcher = Dispatcher(limits.pool, queue_seconds=10, unavailable=Gatekeeper.unavailable, clock=limits.pool.clock)
    meter = Meter(gatekeeper, ledger or MemoryLedger(), models, dispatcher, telemetry, clock=lambda: NOW)
    return InferenceService(meter, {name: model for name, (_, model) in pool.items()}, chat_seconds=25,
                            stream_seconds=120)


def test_a_chat_is_charged_the_counts_the_model_reports():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    model = ScriptedServer(OK)
    response = service(model, ledger, limits).chat(PRINCIPAL, task("hi", max_tokens=50), request_id="req-1")

    assert response.content == "Hello!"
    assert (response.prompt_tokens, response.completion_tokens, response.total_tokens) == (12, 3, 15)
    assert ledger.used == 15 and ledger.held == {}
    assert [(o.status, charged, o.request_id) for o, charged in ledger.log] == [("ok", 15, "req-1")]
    assert model.calls[0]["max_tokens"] == 50 and model.calls[0]["request_id"] == "req-1"
    # Tokens per minute count what was used, not what was feared.
    assert list(limits.counted["tpm:usr_1"].values()) == [15]


def test_the_reservation_covers_the_prompt_bound_plus_max_tokens_and_expires():
    ledger = MemoryLedger()
    request = task()
    service(ScriptedServer(OK), ledger).chat(PRINCIPAL, request, request_id="r")
    reservation = ledger.reservations[0]
    assert reservation.tokens == prompt_tokens_upper_bound(request.messages) + DEFAULT_MAX_TOKENS
    assert reservation.expires_at == NOW + RESERVATION_TTL
    assert reservation.period == "2026-11"


def test_max_tokens_is_capped_by_what_remains_of_the_quota():
    ledger = MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota - 300)
    model = ScriptedServer(OK)
    request = task("hi", max_tokens=1000)
    service(model, ledger).chat(PRINCIPAL, request, request_id="r")
    assert model.calls[0]["max_tokens"] == 300 - prompt_tokens_upper_bound(request.messages)


def test_max_tokens_is_capped_by_the_plan():
    model = ScriptedServer(OK)
    small = with_plan(PRINCIPAL, max_output_tokens=100)
    service(model).chat(small, task("hi", max_tokens=4000), request_id="r")
    assert model.calls[0]["max_tokens"] == 100


def test_quota_exceeded_only_when_nothing_fits():
    model = ScriptedServer(OK)
    bound = prompt_tokens_upper_bound(task().messages)
    ledger = MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota - bound - 1)
    service(model, ledger).chat(PRINCIPAL, task("hi", max_tokens=500), request_id="r")
    assert model.calls[-1]["max_tokens"] == 1
    with pytest.raises(QuotaExceeded):
        service(model, MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota - bound)).chat(
            PRINCIPAL, task(), request_id="r")
    assert len(model.calls) == 1


def test_a_prompt_larger_than_the_plan_allows_per_request_is_refused():
    tiny = with_plan(PRINCIPAL, rate_limit_tpm=50)
    with pytest.raises(PromptTooLarge):
        service(ScriptedServer(OK)).chat(tiny, task("x" * 100), request_id="r")


def test_a_failed_model_call_releases_the_reservation_and_costs_nothing():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    with pytest.raises(UpstreamTimeout):
        service(ScriptedServer(error=UpstreamTimeout("slow")), ledger, limits).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.used == 0 and ledger.held == {}
    assert [(o.status, charged) for o, charged in ledger.log] == [("upstream_timeout", 0)]
    assert list(limits.counted["tpm:usr_1"].values()) == [0]


def test_an_unexpected_error_also_releases_the_reservation():
    ledger = MemoryLedger()
    with pytest.raises(KeyError):
        service(ScriptedServer(error=KeyError("bug")), ledger).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.held == {} and ledger.log[0][0].status == "internal_error"


def test_when_releasing_fails_too_the_original_error_is_reported():
    class BrokenLedger(MemoryLedger):
        def release(self, reservation, outcome):
            raise ConnectionError("database gone")

    with pytest.raises(UpstreamTimeout):
        service(ScriptedServer(error=UpstreamTimeout("slow")), BrokenLedger()).chat(PRINCIPAL, task(), request_id="r")


def test_over_the_request_limit_is_refused_with_retry_after_and_limit_headers():
    chat = service(ScriptedServer(OK))
    for _ in range(PRINCIPAL.plan.rate_limit_rpm):
        chat.chat(PRINCIPAL, task(), request_id="r")
    with pytest.raises(RateLimited) as refused:
        chat.chat(PRINCIPAL, task(), request_id="r")
    assert headers_of(refused.value)["Retry-After"] == "31"
    assert headers_of(refused.value)["X-RateLimit-Limit"] == "2"
    assert headers_of(refused.value)["X-RateLimit-Remaining"] == "0"
    assert "2 requests per minute" in refused.value.message


def test_over_the_token_limit_is_refused_before_anything_is_reserved():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    limits.counted["tpm:usr_1"] = {"earlier": PRINCIPAL.plan.rate_limit_tpm - 10}
    with pytest.raises(RateLimited) as refused:
        service(ScriptedServer(OK), ledger, limits).chat(PRINCIPAL, task(), request_id="r")
    assert "tokens per minute" in refused.value.message
    assert ledger.reservations == []


def test_the_admission_is_reported_for_the_response_headers():
    seen = []
    service(ScriptedServer(OK)).chat(PRINCIPAL, task(), request_id="r", on_admitted=seen.append)
    headers = rate_limit_headers(seen[0].requests, seen[0].tokens)
    assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Remaining"] == "1"
    assert headers["X-RateLimit-Limit-Tokens"] == "5000"


def test_an_unreachable_rate_limiter_admits_when_failing_open_and_refuses_when_not():
    ledger = MemoryLedger()
    service(ScriptedServer(OK), ledger, MemoryLimitStore(unavailable=True)).chat(PRINCIPAL, task(), request_id="r")
    assert ledger.used == 15
    with pytest.raises(ServiceUnavailable):
        service(ScriptedServer(OK), ledger, MemoryLimitStore(unavailable=True), fail_open=False).chat(
            PRINCIPAL, task(), request_id="r")


def test_a_prompt_count_the_model_left_out_is_charged_at_the_reserved_bound():
    ledger = MemoryLedger()
    request = task("hello there")
    response = service(ScriptedServer(Completion("m", "x", None, 4, "stop")), ledger).chat(PRINCIPAL, request, request_id="r")
    bound = prompt_tokens_upper_bound(request.messages)
    assert response.prompt_tokens == bound
    assert ledger.used == bound + 4


def test_the_requested_model_is_used_else_the_default():
    model = ScriptedServer(OK)
    chat = service(model, limits=MemoryLimitStore())
    chat.chat(PRINCIPAL, task(), request_id="r")
    chat.chat(PRINCIPAL, task("hi", model="tiny:latest"), request_id="r")
    assert [call["model"] for call in model.calls] == ["smollm2:135m", "tiny:latest"]


def test_an_unknown_or_disallowed_model_is_refused_before_anything_is_held():
    ledger, limits, model = MemoryLedger(), MemoryLimitStore(), ScriptedServer(OK)
    with pytest.raises(ModelNotFound, match="ghost"):
        service(model, ledger, limits).chat(PRINCIPAL, task("hi", model="ghost"), request_id="r")
    with pytest.raises(ModelNotFound, match="tiny"):
        service(model, ledger, limits, allowed=frozenset({"smollm2:135m"})).chat(
            PRINCIPAL, task("hi", model="tiny"), request_id="r")
    assert ledger.reservations == [] and model.calls == []
    assert set(limits.counted["tpm:usr_1"].values()) == {0}  # admitted, then refunded


def test_a_bare_model_name_means_its_latest_tag():
    model = ScriptedServer(OK)
    service(model).chat(PRINCIPAL, task("hi", model="tiny"), request_id="r")
    assert model.calls[0]["model"] == "tiny"


def test_when_the_server_cannot_list_its_models_the_call_decides():
    model = ScriptedServer(OK)
    service(model, catalog=FixedCatalog(names=None)).chat(PRINCIPAL, task("hi", model="new:1b"), request_id="r")
    assert model.calls[0]["model"] == "new:1b"


def test_an_open_breaker_refuses_at_once_without_holding_or_counting_anything():
    ledger, limits, model = MemoryLedger(), MemoryLimitStore(), ScriptedServer(OK)
    limits.pool.open_breaker("ollama")
    limits.pool.now += 8_500  # 6.5 s of its 15 s left
    with pytest.raises(ServiceUnavailable) as refused:
        service(model, ledger, limits).chat(PRINCIPAL, task(), request_id="r")
    assert refused.value.code == "service_unavailable", "one server: its breaker is the model server's"
    assert headers_of(refused.value)["Retry-After"] == "7"
    assert ledger.reservations == [] and model.calls == []
    assert limits.counted == {} and limits.conclusions == []


def test_the_breaker_hears_of_backend_failures_but_not_of_bad_requests():
    limits, caller = MemoryLimitStore(), with_plan(PRINCIPAL, rate_limit_rpm=10)
    service(ScriptedServer(OK), limits=limits).chat(caller, task(), request_id="r")
    for error in (UpstreamError("down"), ModelNotFound("gone")):
        with pytest.raises(type(error)):
            service(ScriptedServer(error=error), limits=limits).chat(caller, task(), request_id="r")
    bound = prompt_tokens_upper_bound(task().messages)
    with pytest.raises(QuotaExceeded):
        service(ScriptedServer(OK), MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota - bound), limits).chat(
            caller, task(), request_id="r")
    # Answered, failed, refused the request (healthy), never asked.
    assert limits.model_reports() == [True, False, True, None]


def test_options_reach_the_model():
    model = ScriptedServer(OK)
    options = ChatTask(messages=[Message(role="user", content="hi")], options={"temperature": 0.1, "stop": ["\n"]})
    service(model).chat(PRINCIPAL, options, request_id="r")
    assert model.calls[0]["options"] == {"temperature": 0.1, "stop": ["\n"]}


def test_a_user_has_as_many_requests_in_flight_as_the_plan_allows_and_each_exit_frees_its_slot():
    limits = MemoryLimitStore()
    two = with_plan(PRINCIPAL, max_concurrent_requests=2, rate_limit_rpm=100)
    held = []

    class Holding:
        """A model that, while answering, asks for another chat of the same user."""

        def chat(self, **kwargs):
            held.append(kwargs["request_id"])
            if len(held) < 3:
                service(self, limits=limits).chat(two, task("again"), request_id=f"nested-{len(held)}")
            return OK

    with pytest.raises(TooManyConcurrentRequests) as refused:
        service(Holding(), limits=limits).chat(two, task(), request_id="outer")
    assert status_for(refused.value) == 429 and headers_of(refused.value)["Retry-After"] == "1"
    assert held == ["outer", "nested-1"], "the third request in flight was refused before reaching the model"
    assert limits.in_flight["slots:usr_1"] == set(), "every slot came back, the refused request's too"

    failures = [ScriptedServer(error=UpstreamError("down")), ScriptedServer(error=RuntimeError("bug")),
                ScriptedServer(error=ModelNotFound.naming("x"))]
    for model in failures:
        with pytest.raises(Exception):  # noqa: B017 - each failure has its own test; here only the slot matters
            service(model, limits=limits).chat(two, task(), request_id="r")
    with pytest.raises(QuotaExceeded):
        service(ScriptedServer(OK), MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota), limits).chat(
            two, task(), request_id="r")
    assert limits.in_flight["slots:usr_1"] == set()


def test_a_spent_quota_says_when_the_month_resets():
    bound = prompt_tokens_upper_bound(task().messages)
    with pytest.raises(QuotaExceeded) as refused:
        service(ScriptedServer(OK), MemoryLedger(used=PRINCIPAL.plan.monthly_token_quota - bound)).chat(
            PRINCIPAL, task(), request_id="r")
    until_december = int((datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds())
    assert status_for(refused.value) == 429 and headers_of(refused.value)["Retry-After"] == str(until_december)


def test_a_quota_held_by_requests_in_flight_is_not_called_spent():
    ledger = MemoryLedger(used=100, held={"chat_in_flight": PRINCIPAL.plan.monthly_token_quota - 100})
    with pytest.raises(QuotaHeldInFlight) as refused:
        service(ScriptedServer(OK), ledger).chat(PRINCIPAL, task(), request_id="r")
    assert refused.value.code == "quota_held_in_flight" and headers_of(refused.value)["Retry-After"] == "2"


def test_an_answer_whose_charge_the_ledger_cannot_confirm_is_still_given():
    class HungOnSettle(MemoryLedger):
        def settle(self, reservation, outcome, *, quota):
            raise ServiceUnavailable("The database did not answer in time; retry shortly.")

    ledger, limits = HungOnSettle(), MemoryLimitStore()
    result = service(ScriptedServer(OK), ledger, limits).chat(PRINCIPAL, task("hi"), request_id="r")
    assert (result.content, result.total_tokens) == ("Hello!", 15), "charged as far as the caller can know"
    assert list(limits.counted["tpm:usr_1"].values()) == [15]


def _forced(*names: str) -> ChatTask:
    from infergate.domain.messages import Tool
    from infergate.domain.tools import tool_use

    tools = [Tool(name, "", {"type": "object", "properties": {"x": {"type": "integer"}}}) for name in names]
    return replace(task("hi"), tools=tool_use(tools, "required"))


@pytest.mark.parametrize(("names", "answer"), [(("one",), '{"x": 1'), (("one", "two"), "[1, 2]")])
def test_a_forced_call_the_answer_does_not_make_is_refused_and_charged(names, answer):
    ledger = MemoryLedger()
    model = ScriptedServer(Completion("smollm2:135m", answer, prompt_tokens=40, completion_tokens=200, done_reason="length"))
    with pytest.raises(AnswerCutOff) as failed:
        service(model, ledger).chat(PRINCIPAL, _forced(*names), request_id="r")
    assert failed.value.code == "upstream_error" and status_for(failed.value) == 502
    assert not failed.value.cut.server_unwell, "the model's answer, not the server's health"
    assert ledger.used == 240 and [charged for _, charged in ledger.log] == [240], "the model's work is paid for"
    assert "240 tokens used before it ended were charged" in failed.value.message
