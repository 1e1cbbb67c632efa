"""Kept responses in MongoDB (stores/responses.py) under the domain's rules (domain/kept_responses.py):
each is its user's alone, read back as kept, not found once its retention has passed (whatever the
TTL monitor's delay), and forgotten on request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infergate.domain.errors import NotFound
from infergate.domain.kept_responses import KeptResponses
from infergate.stores.responses import MongoKeptResponses

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INPUT = [{"type": "message", "id": "msg_1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
OUTPUT = [{"type": "message", "id": "msg_2", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "You said: hi", "annotations": [], "logprobs": []}]}]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kept(database, clock) -> KeptResponses:
    return KeptResponses(MongoKeptResponses(database), retention=timedelta(days=30), clock=clock)


def test_a_kept_response_is_read_back_whole_by_its_user_only(kept):
    kept.keep("usr_a", "resp_1", context=[], input=INPUT, response={"id": "resp_1", "output": OUTPUT})
    found = kept.get("usr_a", "resp_1")
    assert (found.input, found.response["output"]) == (INPUT, OUTPUT)
    assert found.conversation() == [*INPUT, *OUTPUT], "what goes on from it: the context, the input, the output"
    assert found.expires_at - found.created_at == timedelta(days=30)
    with pytest.raises(NotFound) as refused:
        kept.get("usr_b", "resp_1")
    assert refused.value.code == "response_not_found"


def test_a_response_past_its_retention_is_not_found_though_not_yet_removed(kept, clock, database):
    kept.keep("usr_a", "resp_1", context=[], input=INPUT, response={"id": "resp_1", "output": OUTPUT})
    clock.now = START + timedelta(days=30, seconds=1)
    with pytest.raises(NotFound):
        kept.get("usr_a", "resp_1")
    ttl = database["responses"].index_information()["expires_at_ttl"]
    assert ttl["expireAfterSeconds"] == 0, "MongoDB removes it when it expires"


def test_a_forgotten_response_is_gone_and_only_its_user_can_forget_it(kept):
    kept.keep("usr_a", "resp_1", context=INPUT, input=INPUT, response={"id": "resp_1", "output": []})
    with pytest.raises(NotFound):
        kept.forget("usr_b", "resp_1")
    kept.forget("usr_a", "resp_1")
    with pytest.raises(NotFound):
        kept.get("usr_a", "resp_1")
    with pytest.raises(NotFound):
        kept.forget("usr_a", "resp_1")
