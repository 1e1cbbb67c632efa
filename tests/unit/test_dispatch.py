"""A request in a pool of model servers: moved to another server when its own fails before the
first token, waiting in line while every server is full, refused when none can serve it; and
charged exactly once throughout. The pool's store is in memory, on a clock waiting moves on."""

from __future__ import annotations

import pytest

from infergate.api.errors import headers_of, status_for
from infergate.domain.errors import (
    AnswerCutOff,
    InvalidRequest,
    ModelBusy,
    ModelNotFound,
    ModelServerBusy,
    ModelUnavailable,
    UpstreamError,
)
from infergate.domain.inference import ChatTask
from infergate.domain.messages import Message
from infergate.domain.model_server import Completion, CutOff
from infergate.domain.pool import Departure, Placement, Route, Server
from tests.support.fakes import (
    FixedCatalog,
    MemoryLedger,
    MemoryLimitStore,
    RecordingTelemetry,
    ScriptedAnswer,
    ScriptedServer,
)
from tests.unit.test_inference import OK, PRINCIPAL, service, task, with_plan

CALLER = with_plan(PRINCIPAL, rate_limit_rpm=100, max_concurrent_requests=50)


def pool(**servers: ScriptedServer) -> dict:
    """Servers of two slots each, by name, in the order given."""
    return {name: (Server(name, slots=2), model) for name, model in servers.items()}


def test_a_server_that_fails_before_answering_is_replaced_unseen_and_hears_of_it():
    ledger, limits, telemetry = MemoryLedger(), MemoryLimitStore(), RecordingTelemetry()
    first, second = ScriptedServer(error=UpstreamError("connection refused")), ScriptedServer(OK)
    limits.pool.now = 0  # its first tie goes to the first server named
    answer = service(None, ledger, limits, telemetry=telemetry, servers=pool(a=first, b=second)).chat(
        CALLER, task(), request_id="r")
    assert answer.content == "Hello!" and len(first.calls) == len(second.calls) == 1
    assert [(o.status, charged, o.servers) for o, charged in ledger.log] == [("ok", 15, ("a", "b"))]
    assert [(d.placement.server, d.healthy) for d in limits.pool.departures] == [("a", False), ("b", True)]
    assert telemetry.counts["Failovers"] == 1
    assert limits.pool.in_flight == {"a": {}, "b": {}}, "every slot came back"


@pytest.mark.parametrize("error", [ModelServerBusy("busy", retry_after=1), ModelNotFound.naming("smollm2:135m"),
                                   UpstreamError("5xx")])
def test_busy_missing_and_failing_servers_are_each_replaced(error):
    limits = MemoryLimitStore()
    limits.pool.now = 0
    second = ScriptedServer(OK)
    service(None, limits=limits, servers=pool(a=ScriptedServer(error=error), b=second)).chat(CALLER, task(), request_id="r")
    assert len(second.calls) == 1


def test_the_callers_own_bad_request_is_not_tried_elsewhere_and_blames_no_server():
    limits = MemoryLimitStore()
    limits.pool.now = 0
    second = ScriptedServer(OK)
    with pytest.raises(InvalidRequest):
        service(None, limits=limits, servers=pool(a=ScriptedServer(error=InvalidRequest("bad tools")), b=second)).chat(
            CALLER, task(), request_id="r")
    assert second.calls == [] and limits.model_reports() == [True]


def test_when_every_server_fails_the_last_failure_is_the_answer_and_nothing_is_charged():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    failing = {name: ScriptedServer(error=UpstreamError(f"{name} down")) for name in "abc"}
    with pytest.raises(UpstreamError) as failed:
        service(None, ledger, limits, servers=pool(**failing)).chat(CALLER, task(), request_id="r")
    assert status_for(failed.value) == 502
    assert all(len(model.calls) == 1 for model in failing.values()), "each server asked once"
    assert [(o.status, charged, len(o.servers)) for o, charged in ledger.log] == [("upstream_error", 0, 3)]
    assert sorted(d.placement.server for d in limits.pool.departures if d.healthy is False) == ["a", "b", "c"]


def test_a_stream_moves_before_its_first_piece_but_never_after():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    limits.pool.now = 0
    second = ScriptedServer(answer=ScriptedAnswer(["Hel", "lo"]))
    stream = service(None, ledger, limits, servers=pool(a=ScriptedServer(error=UpstreamError("refused")), b=second)
                     ).stream(CALLER, task(), request_id="r")
    assert "".join(stream) == "Hello" and ledger.log[0][0].servers == ("a", "b")

    class BreaksAfterOnePiece(ScriptedAnswer):
        def __iter__(self):
            yield "Hel"
            self.completion = Completion.partial("smollm2:135m", ["Hel"], CutOff("upstream_error", "broke", True))

    limits.pool.now = 0
    spare = ScriptedServer(OK)
    cut = service(None, ledger, limits, servers=pool(a=ScriptedServer(answer=BreaksAfterOnePiece([])), b=spare)
                  ).stream(CALLER, task(), request_id="r2")
    with pytest.raises(AnswerCutOff):
        list(cut)
    assert spare.calls == [], "a byte reached the caller: nothing is retried"


def test_a_request_waits_in_line_while_every_server_is_full_and_takes_the_first_freed_slot():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    busy = Route("smollm2:135m", ())
    for holder in ("h1", "h2"):  # both slots of the one server taken
        limits.pool.in_flight.setdefault("a", {})[holder] = limits.pool.now + 60_000
    freed_at = limits.pool.now + 1_500
    limits.pool.at(freed_at, lambda: limits.pool.release(Departure(Placement("a", "smollm2:135m"), True, 5, busy),
                                                        ticket="h1"))
    model = ScriptedServer(OK)
    started = limits.pool.now
    service(None, ledger, limits, servers=pool(a=model)).chat(CALLER, task(), request_id="r")
    assert len(model.calls) == 1 and ledger.log[0][1] == 15
    assert freed_at <= limits.pool.now < freed_at + 300, "it took the slot as it came free"
    assert limits.pool.now - started >= 1_500 and limits.pool.lines["a"] == {}
    assert limits.pool.most_in_flight["a"] == 2, "never more than its slots"


def test_a_request_that_waits_out_the_queue_is_refused_busy_and_charged_nothing():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    for holder in ("h1", "h2"):
        limits.pool.in_flight.setdefault("a", {})[holder] = limits.pool.now + 600_000
    started = limits.pool.now
    with pytest.raises(ModelBusy) as refused:
        service(None, ledger, limits, servers=pool(a=ScriptedServer(OK))).chat(CALLER, task(), request_id="r")
    assert status_for(refused.value) == 503 and headers_of(refused.value)["Retry-After"] == "1"
    assert 10_000 <= limits.pool.now - started < 10_300, "QUEUE_TIMEOUT_SECONDS, 10 in this service"
    assert [(o.status, charged) for o, charged in ledger.log] == [("model_busy", 0)] and ledger.held == {}
    assert limits.pool.lines["a"] == {} and limits.in_flight["slots:usr_1"] == set(), "it left the line; its slot came back"


def test_an_alias_goes_to_its_next_model_at_once_when_the_first_models_servers_are_full():
    limits = MemoryLimitStore()
    for holder in ("h1", "h2"):
        limits.pool.in_flight.setdefault("big", {})[holder] = limits.pool.now + 600_000
    catalog = FixedCatalog(names=["big:70b", "small:1b"], servers=("big", "small"))
    servers = {"big": (Server("big", slots=2, models=("big:70b",)), ScriptedServer(OK)),
               "small": (Server("small", slots=2, models=("small:1b",)), small := ScriptedServer(OK))}
    started = limits.pool.now
    service(None, limits=limits, servers=servers, catalog=catalog, aliases={"chat": ["big:70b", "small:1b"]}).chat(
        CALLER, task(model="chat"), request_id="r")
    assert small.calls[0]["model"] == "small:1b" and limits.pool.now == started, "no waiting"


def test_a_model_whose_every_server_is_unhealthy_is_unavailable_not_unknown():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    for name in ("a", "b"):
        limits.pool.open_breaker(name)
    with pytest.raises(ModelUnavailable) as refused:
        service(None, ledger, limits, servers=pool(a=ScriptedServer(OK), b=ScriptedServer(OK))).chat(
            CALLER, task(), request_id="r")
    assert status_for(refused.value) == 503 and refused.value.code == "model_unavailable"
    assert ledger.reservations == [] and limits.counted == {}


def test_one_servers_open_breaker_refuses_nothing_another_can_serve():
    limits = MemoryLimitStore()
    limits.pool.open_breaker("a")
    second = ScriptedServer(OK)
    for n in range(3):
        service(None, limits=limits, servers=pool(a=ScriptedServer(OK), b=second)).chat(CALLER, task(), request_id=f"r{n}")
    assert len(second.calls) == 3


def test_without_the_pools_store_a_request_goes_to_its_first_server_and_still_moves_on_failure():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    limits.unavailable = limits.pool.unavailable = True
    second = ScriptedServer(OK)
    service(None, ledger, limits, servers=pool(a=ScriptedServer(error=UpstreamError("refused")), b=second)).chat(
        CALLER, task(), request_id="r")
    assert len(second.calls) == 1 and ledger.log[0][0].servers == ("a", "b")


def test_a_continued_conversation_goes_back_to_the_server_that_served_it():
    limits = MemoryLimitStore()
    models = {"a": ScriptedServer(OK), "b": ScriptedServer(OK), "c": ScriptedServer(OK)}
    inference = service(None, limits=limits, servers=pool(**models))
    first = [Message("system", "be brief"), Message("user", "hi")]
    inference.chat(CALLER, ChatTask(messages=first), request_id="turn-1")
    served = next(name for name, model in models.items() if model.calls)
    for turn in range(2, 6):
        limits.pool.now += 7  # another tick: without affinity, a tie would go elsewhere
        follow = [*first, Message("assistant", "Hello!"), Message("user", f"and {turn}?")]
        inference.chat(CALLER, ChatTask(messages=follow), request_id=f"turn-{turn}")
    assert len(models[served].calls) == 5
