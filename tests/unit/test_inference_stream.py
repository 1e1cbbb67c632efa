"""A streamed chat's rules: pieces handed on as produced, and every way it ends charged exactly once."""

from __future__ import annotations

import pytest

from infergate.api.errors import status_for
from infergate.api.openai import chat_task
from infergate.domain.errors import AnswerCutOff, UpstreamError
from infergate.domain.model_server import Completion, CutOff
from infergate.domain.tokens import prompt_tokens_upper_bound
from infergate.schemas.openai import ChatCompletionRequest
from tests.support.fakes import MemoryLedger, MemoryLimitStore, ScriptedAnswer, ScriptedServer
from tests.unit.test_inference import PRINCIPAL, service, task


def streaming(pieces: list[str], final: Completion | None = None) -> ScriptedServer:
    """A model server that streams `pieces`, then `final` (by default its counts for them)."""
    return ScriptedServer(answer=ScriptedAnswer(pieces, final))


def test_pieces_arrive_one_by_one_and_the_answer_is_charged_the_models_counts():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    model = streaming(["Hel", "lo", "!"])
    stream = service(model, ledger, limits).stream(PRINCIPAL, task("hi"), request_id="req-1", timeout=7)

    assert model.answer.taken == ["Hel"], "the model was asked, and its first piece awaited, before stream() returned"
    seen = []
    for piece in stream:
        seen.append((piece, list(model.answer.taken)))
    assert seen == [("Hel", ["Hel"]), ("lo", ["Hel", "lo"]), ("!", ["Hel", "lo", "!"])]
    assert (stream.result.content, stream.result.prompt_tokens, stream.result.completion_tokens) == ("Hello!", 9, 3)
    assert ledger.used == 12 and ledger.held == {}
    assert 6 < model.calls[0]["timeout"] <= 7, "the server has what is left of the caller's 7 s"
    assert limits.in_flight["slots:usr_1"] == set(), "the slot came back when the answer ended"
    assert [c.tokens for c in limits.conclusions] == [12]


def test_a_reader_gone_after_two_pieces_stops_the_model_and_is_charged_the_prompt_and_those_pieces():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    model = streaming(["a", "b", "c", "d", "e"])
    stream = service(model, ledger, limits).stream(PRINCIPAL, task("hi"), request_id="req-1")
    pieces = iter(stream)
    assert [next(pieces), next(pieces)] == ["a", "b"]

    stream.close()

    assert model.answer.closed and model.answer.taken == ["a", "b"]
    outcome, charged = ledger.log[-1]
    bound = prompt_tokens_upper_bound(task("hi").messages)
    assert (outcome.status, outcome.prompt_tokens, outcome.completion_tokens) == ("client_closed", bound, 2)
    assert charged == bound + 2 == ledger.used and ledger.held == {}
    assert limits.in_flight["slots:usr_1"] == set()
    assert limits.model_reports() == [True], "a reader gone says nothing against the model server"


def test_an_answer_cut_off_mid_stream_raises_its_failure_after_charging_what_was_generated():
    ledger = MemoryLedger()
    cut = Completion("smollm2:135m", "ab", prompt_tokens=None, completion_tokens=2, done_reason=None,
                     pieces=("a", "b"), cut=CutOff("upstream_timeout", "The model server did not finish within 5 s."))
    stream = service(streaming(["a", "b"], final=cut), ledger).stream(PRINCIPAL, task("hi"), request_id="r")

    received = []
    with pytest.raises(AnswerCutOff) as failure:
        for piece in stream:
            received.append(piece)
    assert received == ["a", "b"]
    assert failure.value.code == "upstream_timeout" and status_for(failure.value) == 504
    bound = prompt_tokens_upper_bound(task("hi").messages)
    assert ledger.used == bound + 2
    assert f"The {bound + 2} tokens used before it ended were charged." in failure.value.message
    assert ledger.log[-1][0].status == "upstream_timeout"


def test_a_failure_before_the_first_piece_is_raised_by_stream_and_costs_nothing():
    ledger, limits = MemoryLedger(), MemoryLimitStore()
    with pytest.raises(UpstreamError):
        service(ScriptedServer(error=UpstreamError("down")), ledger, limits).stream(
            PRINCIPAL, task("hi"), request_id="r")
    assert ledger.used == 0 and ledger.held == {}
    assert limits.in_flight["slots:usr_1"] == set()


def test_a_forced_tool_call_streams_no_content_and_ends_with_the_call():
    request = ChatCompletionRequest.model_validate({
        "model": "smollm2:135m", "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    })
    model = streaming(['{"city":', ' "Oslo"}'])
    stream = service(model, MemoryLedger()).stream(PRINCIPAL, chat_task(request), request_id="r")

    assert list(stream) == []
    assert [(call.name, dict(call.arguments)) for call in stream.result.tool_calls] == [("weather", {"city": "Oslo"})]
