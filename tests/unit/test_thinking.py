"""A chat that asks the model to think: a model that cannot is asked again without it, on the
same hold, and the answer says thinking was ignored (remembered, so it is asked once); a model
that can streams its thoughts first, and they are charged, never answered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infergate.domain.errors import UpstreamError
from infergate.domain.inference import ChatTask
from infergate.domain.model_server import Completion, Thought
from tests.support.fakes import MemoryLedger, MemoryLimitStore, RecordingTelemetry, ScriptedAnswer, ScriptedServer
from tests.unit.test_dispatch import CALLER, pool
from tests.unit.test_inference import OK, PRINCIPAL, service, task

THOUGHTFUL = Completion("smollm2:135m", "Hello!", prompt_tokens=12, completion_tokens=7, done_reason="stop",
                        thinking="They greet me; I greet them.")


def thinking(prompt: str = "hi", **fields) -> ChatTask:
    return replace(task(prompt, **fields), think=True)


def asked_to_think(model: ScriptedServer) -> list[bool]:
    return [call["think"] for call in model.calls]


# -- a model that cannot think --------------------------------------------------------------


def test_a_model_that_cannot_think_is_asked_again_without_it_on_the_same_hold_and_charged_once():
    ledger, limits, telemetry = MemoryLedger(), MemoryLimitStore(), RecordingTelemetry()
    model = ScriptedServer(OK, cannot_think=True)

    result = service(model, ledger, limits, telemetry=telemetry).chat(PRINCIPAL, thinking(), request_id="r")

    assert asked_to_think(model) == [True, False]
    assert (result.content, result.thinking, result.ignored) == ("Hello!", "", ("thinking",))
    assert len(ledger.reservations) == 1, "asked again on the same hold"
    assert [(o.status, charged) for o, charged in ledger.log] == [("ok", 15)], "one settle"
    assert (result.prompt_tokens, result.completion_tokens) == (12, 3) and ledger.used == result.total_tokens == 15
    assert ledger.held == {} and [c.tokens for c in limits.conclusions] == [15]
    # A model that cannot think is not a server that failed.
    assert limits.model_reports() == [True]
    assert "UpstreamFailures" not in telemetry.counts and "Failovers" not in telemetry.counts


def test_the_next_request_to_a_model_that_could_not_think_does_not_ask_it_to():
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    model = ScriptedServer(OK, cannot_think=True)
    inference = service(model, ledger, limits)
    inference.chat(PRINCIPAL, thinking(), request_id="r1")

    again = inference.chat(PRINCIPAL, thinking(), request_id="r2")

    assert asked_to_think(model) == [True, False, False], "asked once, not again"
    assert again.ignored == ("thinking",), "still told its thinking was ignored"
    assert [(o.status, charged) for o, charged in ledger.log] == [("ok", 15), ("ok", 15)]
    assert len(ledger.reservations) == 2 and limits.model_reports() == [True, True]


def test_what_is_remembered_is_the_model_on_its_server_not_every_model():
    model = ScriptedServer(OK, cannot_think=True)
    inference = service(model, limits=MemoryLimitStore())
    inference.chat(PRINCIPAL, thinking(), request_id="r1")
    inference.chat(PRINCIPAL, thinking("hi", model="tiny:latest"), request_id="r2")

    assert [(call["model"], call["think"]) for call in model.calls] == [
        ("smollm2:135m", True), ("smollm2:135m", False), ("tiny:latest", True), ("tiny:latest", False)]


@pytest.mark.parametrize("refuses_when_read", [False, True], ids=["refused-when-asked", "refused-when-read"])
def test_a_streamed_chat_knows_thinking_was_ignored_before_its_first_piece_is_read(refuses_when_read):
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    model = ScriptedServer(answer=ScriptedAnswer(["Hel", "lo", "!"]), cannot_think=True,
                           refuses_when_read=refuses_when_read)

    stream = service(model, ledger, limits).stream(PRINCIPAL, thinking(), request_id="r")

    assert stream.ignored == ("thinking",)
    assert model.answer.taken == ["Hel"], "only the answer asked without thinking was read"
    assert asked_to_think(model) == [True, False]
    assert list(stream) == ["Hel", "lo", "!"]
    assert stream.result is not None and stream.result.ignored == ("thinking",)
    assert len(ledger.reservations) == 1
    assert [(o.status, charged) for o, charged in ledger.log] == [("ok", 12)] and ledger.used == 12
    assert limits.model_reports() == [True]


def test_a_stream_after_a_chat_that_found_the_model_cannot_think_does_not_ask_it_to():
    model = ScriptedServer(OK, answer=ScriptedAnswer(["Hi"]), cannot_think=True)
    inference = service(model, limits=MemoryLimitStore())
    inference.chat(PRINCIPAL, thinking(), request_id="r1")

    stream = inference.stream(PRINCIPAL, thinking(), request_id="r2")

    assert stream.ignored == ("thinking",) and asked_to_think(model) == [True, False, False]
    assert list(stream) == ["Hi"]


def test_a_chat_that_does_not_ask_to_think_asks_no_model_to_and_ignores_nothing():
    model = ScriptedServer(OK, cannot_think=True)
    result = service(model).chat(PRINCIPAL, task(), request_id="r")
    assert asked_to_think(model) == [False] and result.ignored == ()


# -- a model that can think ----------------------------------------------------------------


def test_a_thinking_model_is_not_told_it_cannot_and_its_thoughts_are_charged_but_not_answered():
    ledger = MemoryLedger()
    model = ScriptedServer(THOUGHTFUL)

    result = service(model, ledger).chat(PRINCIPAL, thinking(), request_id="r")

    assert asked_to_think(model) == [True]
    assert result.ignored == ()
    assert (result.content, result.thinking) == ("Hello!", "They greet me; I greet them.")
    assert (result.prompt_tokens, result.completion_tokens) == (12, 7)
    assert [(o.status, o.completion_tokens, charged) for o, charged in ledger.log] == [("ok", 7, 19)]


def test_a_thinking_models_thoughts_stream_first_as_thoughts_and_are_charged():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    pieces = [Thought("Greeted;"), Thought(" greet back."), "Hel", "lo!"]
    model = ScriptedServer(answer=ScriptedAnswer(pieces))

    stream = service(model, ledger, limits).stream(PRINCIPAL, thinking(), request_id="r")

    assert stream.ignored == ()
    assert asked_to_think(model) == [True]
    assert list(stream) == pieces, "thoughts first, as Thought pieces, then the text"
    result = stream.result
    assert result is not None and result.ignored == ()
    assert (result.content, result.thinking) == ("Hello!", "Greeted; greet back.")
    assert result.completion_tokens == 4, "two thoughts and two pieces of text"
    assert [(o.status, charged) for o, charged in ledger.log] == [("ok", 9 + 4)] and ledger.used == 13


def test_a_reader_that_leaves_mid_thought_is_charged_what_was_generated():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    model = ScriptedServer(answer=ScriptedAnswer([Thought("a"), Thought("b"), Thought("c"), "Hi"]))
    asked = thinking()
    inference = service(model, ledger, limits)
    stream = inference.stream(PRINCIPAL, asked, request_id="r")
    pieces = iter(stream)
    assert [next(pieces), next(pieces)] == [Thought("a"), Thought("b")]

    stream.close()

    assert model.answer.closed and model.answer.taken == [Thought("a"), Thought("b")]
    bound = inference.prompt_bound(asked)
    [(outcome, charged)] = ledger.log
    assert (outcome.status, outcome.prompt_tokens, outcome.completion_tokens) == ("client_closed", bound, 2)
    assert charged == ledger.used == bound + 2 and ledger.held == {}
    assert stream.result is None
    assert limits.model_reports() == [True], "a reader gone says nothing against the model server"


# -- thinking across a pool ---------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
def test_a_request_that_moves_to_a_server_that_thinks_is_not_told_thinking_was_ignored(streamed):
    """Server a cannot think, and then fails before answering; the request moves to b, which
    thinks. The answer has b's thoughts, so thinking was not ignored."""
    limits, ledger = MemoryLimitStore(), MemoryLedger()
    limits.pool.now = 0  # its first tie goes to the first server named
    first = ScriptedServer(error=UpstreamError("connection refused"), cannot_think=True)
    second = ScriptedServer(THOUGHTFUL, answer=ScriptedAnswer([Thought("They greet me; I greet them."), "Hello!"]))
    inference = service(None, ledger, limits, servers=pool(a=first, b=second))

    if streamed:
        stream = inference.stream(CALLER, thinking(), request_id="r")
        ignored_before_reading = stream.ignored
        assert list(stream)[0] == Thought("They greet me; I greet them.")
        result = stream.result
        assert result is not None
    else:
        result = inference.chat(CALLER, thinking(), request_id="r")
        ignored_before_reading = result.ignored

    assert asked_to_think(first) == [True, False] and asked_to_think(second) == [True]
    assert result.thinking == "They greet me; I greet them."
    assert [(o.status, o.servers) for o, _ in ledger.log] == [("ok", ("a", "b"))]
    assert (ignored_before_reading, result.ignored) == ((), ()), "b thought: thinking was applied"
