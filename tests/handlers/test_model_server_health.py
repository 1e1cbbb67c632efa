"""The circuit breaker hears only of a model server that is unwell, and an answer cut off after
tokens were generated is charged exactly what was generated."""

from __future__ import annotations

import pytest

from infergate.domain.messages import Message
from infergate.domain.tokens import prompt_tokens_upper_bound
from tests.handlers.conftest import body
from tests.support.accounting import log_lines

PROMPT = "one two three four five six seven eight"
PROMPT_BOUND = prompt_tokens_upper_bound([Message(role="user", content=PROMPT)])


@pytest.mark.parametrize(
    ("fault", "settings", "status", "code"),
    [
        ({"mode": "break", "after_pieces": 2}, {}, 502, "upstream_error"),
        ({"mode": "drop", "after_pieces": 2}, {}, 502, "upstream_error"),
        ({"mode": "stall", "after_pieces": 2, "seconds": 5}, {"OLLAMA_STALL_TIMEOUT": "0.5"}, 504, "upstream_timeout"),
    ],
)
def test_an_answer_cut_off_charges_the_tokens_generated_before_the_cut(faulty, faults, database, fault, settings,
                                                                         status, code):
    api = faulty(**settings)
    key = api.register()["api_key"]
    faults(**fault)
    response = api.call("POST", "/v1/chat", key=key, body={"prompt": PROMPT})
    assert response["statusCode"] == status and body(response)["error"]["code"] == code
    charged = PROMPT_BOUND + 2  # the prompt's reserved bound (Ollama sent no count) and the two pieces received
    assert f"The {charged} tokens used before it ended were charged." in body(response)["error"]["message"]
    usage = body(api.call("GET", "/v1/usage", key=key))
    assert (usage["tokens_used"], usage["tokens_reserved"], usage["requests"]) == (charged, 0, 1)
    [line] = log_lines(database)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (code, PROMPT_BOUND, 2)


def test_long_answers_cut_by_the_deadline_while_tokens_flow_leave_the_breaker_closed(faulty, faults, database):
    api = faulty(OLLAMA_TIMEOUT="1", CIRCUIT_BREAKER_FAILURES="2")
    greedy, other = api.register("greedy@example.com")["api_key"], api.register("other@example.com")["api_key"]
    faults(mode="trickle", piece_seconds=0.3, count=3)
    cut = [api.call("POST", "/v1/chat", key=greedy, body={"prompt": PROMPT, "max_tokens": 50}) for _ in range(3)]
    assert [response["statusCode"] for response in cut] == [504, 504, 504]
    assert body(api.call("GET", "/v1/usage", key=greedy))["tokens_used"] > 3 * PROMPT_BOUND, "each paid for its tokens"

    served = api.call("POST", "/v1/chat", key=other, body={"prompt": "hi", "max_tokens": 5})
    assert served["statusCode"] == 200, "another user is not locked out"


def test_a_server_that_stalls_opens_the_breaker(faulty, faults):
    api = faulty(OLLAMA_STALL_TIMEOUT="0.3", CIRCUIT_BREAKER_FAILURES="2", CIRCUIT_BREAKER_OPEN_SECONDS="30")
    key = api.register()["api_key"]
    faults(mode="hang", seconds=3, count=2)
    assert [api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})["statusCode"] for _ in range(2)] == [504, 504]
    refused = api.call("POST", "/v1/chat", key=key, body={"prompt": "hi"})
    assert refused["statusCode"] == 503 and "giving it a rest" in body(refused)["error"]["message"]
    exposition = api.call("GET", "/metrics", query={"format": "prometheus"})["body"]
    assert '\ninfergate_circuit_breaker_open{server="ollama"} 1\n' in exposition
