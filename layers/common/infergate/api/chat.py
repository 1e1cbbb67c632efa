"""Shapes a streamed answer of InferGate's own POST /v1/chat as server-sent events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from infergate.api.streaming import error_event, sse
from infergate.errors import InferGateError
from infergate.models.chat import ChatDelta, ChatResponse

if TYPE_CHECKING:
    from infergate.domain.chat import ChatStream


def event_stream(stream: ChatStream) -> Iterator[str]:
    """A `delta` event per piece of the answer as the model produces it, then `done` with the
    whole answer and its usage (the body of a chat not streamed). An answer cut off ends with
    an `error` event instead, after what was generated."""
    try:
        for piece in stream:
            yield sse(ChatDelta(content=piece).model_dump_json(), event="delta")
    except InferGateError as failure:
        yield error_event(failure, event="error")
        return
    finally:
        stream.close()
    assert stream.result is not None
    yield sse(ChatResponse.of(stream.result).model_dump_json(), event="done")
