"""Responses kept for their conversations to go on (OpenAI's Responses API with `store`): what a
kept response holds, the port that keeps them, and the rules: each is its user's alone (another
user's id is not found), and is kept for the operator's retention, then forgotten.

A conversation continued from a kept response (`previous_response_id`) is read whole again by
the model, so its tokens count as prompt tokens, as the model reads them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from infergate.domain.errors import NotFound

Item = Mapping[str, Any]  # an item of a conversation, as its API writes it


@dataclass(frozen=True)
class KeptResponse:
    id: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    context: Sequence[Item]  # the conversation before this response's input
    input: Sequence[Item]  # what this response was asked
    response: Mapping[str, Any]  # the response as it was answered, its output included

    def conversation(self) -> list[Item]:
        """The whole conversation so far, to go on from: the context, the input, then the output."""
        return [*self.context, *self.input, *self.response.get("output", ())]


class KeptResponseStore(Protocol):
    def keep(self, kept: KeptResponse) -> None: ...

    def find(self, user_id: str, response_id: str, *, now: datetime) -> KeptResponse | None:
        """The user's response of that id, unless it has expired."""

    def forget(self, user_id: str, response_id: str) -> bool:
        """True if the user had such a response."""


class KeptResponses:
    def __init__(self, store: KeptResponseStore, *, retention: timedelta, clock: Callable[[], datetime]) -> None:
        self._store, self._retention, self._clock = store, retention, clock

    def keep(self, user_id: str, response_id: str, *, context: Sequence[Item], input: Sequence[Item],
             response: Mapping[str, Any]) -> KeptResponse:
        now = self._clock()
        kept = KeptResponse(response_id, user_id, now, now + self._retention, context, input, response)
        self._store.keep(kept)
        return kept

    def get(self, user_id: str, response_id: str) -> KeptResponse:
        kept = self._store.find(user_id, response_id, now=self._clock())
        if kept is None:
            raise _not_found(response_id)
        return kept

    def forget(self, user_id: str, response_id: str) -> None:
        if not self._store.forget(user_id, response_id):
            raise _not_found(response_id)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response with id '{response_id}' is kept for you (or it has expired).",
                    code="response_not_found", param="response_id")
