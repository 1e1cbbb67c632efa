"""The model server's port, and the values it speaks of: an answer (whole, or cut off after
some of it was generated), an embedding, and the models the server has.

The HTTP client (llm/client.py) implements it, for Ollama's API and OpenAI's. A failure before anything was generated is
raised (UpstreamError and its kinds, ModelNotFound, InvalidRequest); an answer that ends
after pieces arrived comes back as a Completion with its `cut`, so that what was generated
is charged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from infergate.domain.messages import Message, Tool, ToolCall

CLIENT_CLOSED = "client_closed"


@dataclass(frozen=True)
class CutOff:
    """Why an answer ended before it was whole: the error code its caller gets, a sentence
    saying why, and whether it is a sign that the model server is unwell (its circuit breaker
    counts those)."""

    code: str
    reason: str
    server_unwell: bool = False


READER_GONE = CutOff(CLIENT_CLOSED, "The client closed the connection before the answer ended.")


@dataclass(frozen=True)
class Thought:
    """A piece of what a thinking model thought before it answered (Ollama's `think`): generated,
    so charged, but not part of the answer."""

    text: str


Piece = str | Thought  # what a stream hands on: a piece of the answer, or of a thought


def said(pieces: Sequence[Piece]) -> str:
    """The answer the pieces make, thoughts left out."""
    return "".join(piece for piece in pieces if isinstance(piece, str))


def thought(pieces: Sequence[Piece]) -> str:
    """What the pieces thought."""
    return "".join(piece.text for piece in pieces if isinstance(piece, Thought))


@dataclass(frozen=True)
class Completion:
    model: str
    content: str
    prompt_tokens: int | None  # None when the model server did not report it
    completion_tokens: int
    done_reason: str | None
    pieces: tuple[Piece, ...] = ()  # the answer as the model server streamed it, thoughts included
    cut: CutOff | None = None  # set when the answer was cut off: this much was generated first
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str = ""  # what the model thought first, when it was asked to think

    @classmethod
    def partial(cls, model: str, pieces: Sequence[Piece], cut: CutOff, *, prompt_tokens: int | None = None) -> Completion:
        """An answer that ended after `pieces`, for `cut`: a piece for each token generated, and
        the prompt's count if the server said it while answering (Ollama says it only at the end)."""
        return cls(model=model, content=said(pieces), prompt_tokens=prompt_tokens, completion_tokens=len(pieces),
                   done_reason=None, pieces=tuple(pieces), cut=cut, thinking=thought(pieces))


@dataclass(frozen=True)
class Embedding:
    model: str
    vectors: tuple[tuple[float, ...], ...]  # one per input, in order
    prompt_tokens: int | None  # None when the model server did not report it


@dataclass(frozen=True)
class ModelEntry:
    name: str
    modified_at: datetime | None


class AnswerStream(Protocol):
    """An answer as the model server produces it: iterating gives its pieces (of text, or of a
    thought); once they have ended, `completion` is the whole answer (or what there was of it,
    with its cut)."""

    completion: Completion | None
    prompt_tokens: int | None  # the prompt's count, if the server has said it while answering

    def __iter__(self) -> Iterator[Piece]: ...

    def close(self) -> None:
        """Stop the answer early: the server stops generating."""


class ModelServer(Protocol):
    def chat(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
        think: bool = False, suffix: str | None = None,
    ) -> Completion:
        """`tools`: functions the model may call; `answer_format`: "json", or a JSON schema the
        answer must conform to; `timeout`: the most seconds it may take, when less than the server's;
        `think`: the model thinks first (ThinkingUnsupported if it cannot); `suffix`: the text that
        follows the answer, which fills in between the one message (a prompt) and it."""

    def stream(
        self, *, model: str, messages: list[Message], max_tokens: int, request_id: str, options: dict | None = None,
        tools: Sequence[Tool] = (), answer_format: str | Mapping[str, Any] | None = None, timeout: float | None = None,
        think: bool = False, suffix: str | None = None,
    ) -> AnswerStream:
        """The answer as the model produces it, within `timeout` seconds when given."""

    def embed(self, *, model: str, inputs: Sequence[str], dimensions: int | None, request_id: str,
              timeout: float | None = None) -> Embedding:
        """One vector per input; `dimensions`, when given, for a model that can shorten its vectors."""

