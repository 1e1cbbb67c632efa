"""Inference: what every API surface asks of the model server, metered alike. A chat, a
streamed chat and an embedding are each: plan what it may cost → open the meter → ask the
model server → settle.

An answer cut off after tokens were generated (the deadline, a stall, a broken stream, a
forced tool call the answer does not make) is charged what the model generated (its count
if it sent one, else a token per piece received, with the prompt's held bound), and then
AnswerCutOff is raised. A failure before any token costs nothing (meter.py).

A server that fails before the first token of its answer (before any piece of a stream has
been read) is replaced by another, within the request's deadline (MeteredCall.fail_over).

A streamed chat (`stream`) takes the same steps, handing on each piece of the answer as
the model produces it, and is settled when the answer ends. A reader that goes away
mid-answer closes the stream: the model server stops generating, and what it generated
is charged, as client_closed.

A chat may ask the model to think first. A model that cannot is asked again without it,
on the same hold (nothing was generated), and the answer says that thinking was ignored;
which models could not is remembered, so they are asked once.
"""

# Longer than 300 lines: the one path every API's chat takes (plan, meter, ask, settle), streamed or
# not, with thinking asked for where the model can.

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from infergate.domain.admission import Admission
from infergate.domain.errors import AnswerCutOff, InferGateError, PromptTooLarge, ThinkingUnsupported, UpstreamError
from infergate.domain.messages import Message, ToolCall
from infergate.domain.meter import Estimate, Meter, MeteredCall, Usage
from infergate.domain.model_server import READER_GONE, AnswerStream, Completion, CutOff, ModelServer, Piece, Thought
from infergate.domain.periods import period_of
from infergate.domain.pool import conversation_key
from infergate.domain.principal import Principal
from infergate.domain.tokens import (
    DEFAULT_MAX_TOKENS,
    TEMPLATE_TOKENS_PER_MESSAGE,
    TEMPLATE_TOKENS_PER_REQUEST,
    Tokenizers,
    embedding_tokens_upper_bound,
    prompt_tokens_upper_bound,
    utf8_bytes,
)
from infergate.domain.tools import ToolUse

Admitted = Callable[[Admission], None]
Watch = Callable[[], CutOff | None]  # why the caller may no longer be answered, if they may not
T = TypeVar("T")


def _unheard(admission: Admission) -> None:
    """The default listener for a request's admission: nobody needs its standing."""


@dataclass(frozen=True)
class ChatTask:
    """One chat, as any API surface asks for it."""

    messages: list[Message]
    model: str | None = None
    max_tokens: int | None = None
    options: dict = field(default_factory=dict)  # passed to Ollama: temperature, top_p, seed, stop, penalties
    tools: ToolUse = field(default_factory=ToolUse)
    answer_format: str | Mapping[str, Any] | None = None  # "json" or a JSON schema
    one_tool_call: bool = False  # at most one call in the answer (no parallel calls)
    end_user: str | None = None  # who, behind a shared key, asked: recorded on the request log
    think: bool = False  # the model thinks first, if it can (its thoughts are charged, not answered)
    suffix: str | None = None  # a fill-in-the-middle: the answer goes between the one message and this
    ignored: tuple[str, ...] = ()  # what the request asked that is not applied, as its fields name it

    @property
    def format(self) -> str | Mapping[str, Any] | None:
        """What the model's answer must conform to: a forced call's arguments, or the answer format."""
        return self.tools.answer_format or self.answer_format

    def prompt_extra(self) -> str:
        """What the model reads besides the messages: the tools offered, the answer's schema."""
        return "".join(tool.prompt_text() for tool in self.tools.offered) + (
            json.dumps(self.format) if self.format is not None else "") + (self.suffix or "")


@dataclass(frozen=True)
class ChatResult:
    id: str
    model: str
    content: str
    prompt_tokens: int
    completion_tokens: int
    done_reason: str | None
    created: datetime
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str = ""
    thinking_tokens: int = 0  # of completion_tokens, those the model thought in (a piece is a token)
    ignored: tuple[str, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class EmbeddingTask:
    inputs: list[str]
    model: str | None = None
    dimensions: int | None = None
    end_user: str | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    id: str
    model: str
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


@dataclass(frozen=True)
class _Plan:
    """What one chat may cost before anything is held."""

    task: ChatTask
    prompt_bound: int
    max_tokens: int
    ignored: tuple[str, ...] = ()  # what the request asked that is not applied, once the model is asked

    def estimate(self, request_id: str, user_id: str) -> Estimate:
        # At least the prompt and one token of answer must fit in what is held.
        messages = self.task.messages
        return Estimate(request_id, self.task.model, self.task.end_user, self.prompt_bound,
                        worst_case=self.prompt_bound + self.max_tokens, minimum=self.prompt_bound + 1,
                        conversation=conversation_key(user_id, messages),
                        continued=any(message.role == "assistant" for message in messages))


class InferenceService:
    def __init__(self, meter: Meter, servers: Mapping[str, ModelServer], *, chat_seconds: float,
                 stream_seconds: float, tokenizers: Tokenizers | None = None) -> None:
        """`servers`: each model server of the pool, by name; `chat_seconds` (`stream_seconds`):
        the most a chat or an embedding (a streamed chat) may take, waiting for a slot included;
        `tokenizers`: how each model's prompts are counted before it sees them (bytes by default)."""
        self.meter, self.servers = meter, servers
        self.tokenizers = tokenizers or Tokenizers({}, default="", aliases={})
        self._chat_seconds, self._stream_seconds = chat_seconds, stream_seconds
        self._unthinking: set[tuple[str, str]] = set()  # (server, model): asked to think, it could not

    def chat(self, principal: Principal, task: ChatTask, *, request_id: str,
             on_admitted: Admitted = _unheard) -> ChatResult:
        plan = self._plan(principal, task)
        with self.meter.open(principal, plan.estimate(request_id, principal.user_id), on_admitted,
                             seconds=self._chat_seconds) as call:
            completion, ignored = self._asked_to_think(call, plan, lambda server, think: server.chat(
                **_question(call, plan), think=think, timeout=call.seconds_left()))
            return self._settled(call, replace(plan, ignored=ignored), completion)

    def stream(self, principal: Principal, task: ChatTask, *, request_id: str, on_admitted: Admitted = _unheard,
               timeout: float | None = None, watch: Watch | None = None) -> ChatStream:
        """The chat, streamed: admitted, held and asked before this returns, so that a failure
        before the answer starts is raised here, as for `chat`. `timeout`: the most seconds the
        answer may take, when the caller's own limit is shorter than the model server's; `watch`:
        asked between pieces why the caller may no longer be answered (a suspension, a revoked key)."""
        plan = self._plan(principal, task)
        seconds = self._stream_seconds if timeout is None else min(timeout, self._stream_seconds)
        call = self.meter.open(principal, plan.estimate(request_id, principal.user_id), on_admitted,
                               seconds=seconds)
        created = self.meter.clock()

        def started(server: ModelServer, think: bool) -> tuple[AnswerStream, Iterator[Piece], Piece | None]:
            answer = server.stream(**_question(call, plan), think=think, timeout=call.seconds_left())
            pieces = iter(answer)
            return answer, pieces, next(pieces, None)  # a failure before the first piece is raised here

        try:
            (answer, pieces, first), ignored = self._asked_to_think(call, plan, started)
        except BaseException as error:
            call.close(error)
            raise
        plan = replace(plan, ignored=ignored)
        return ChatStream(call, answer, _chained(first, pieces), show=not task.tools.forced, created=created,
                          ignored=ignored, finish=lambda completion: self._settled(call, plan, completion), watch=watch)

    def embed(self, principal: Principal, task: EmbeddingTask, *, request_id: str,
              on_admitted: Admitted = _unheard) -> EmbeddingResult:
        """Embeddings of the task's inputs, metered as prompt tokens against the same quota and limits."""
        bound = embedding_tokens_upper_bound(task.inputs, count=self.tokenizers.count_for(task.model))
        self._fits_one_request(principal, bound, f"These {len(task.inputs)} input(s) are "
                               f"{sum(len(text.encode()) for text in task.inputs)} bytes of UTF-8", model=task.model)
        estimate = Estimate(request_id, task.model, task.end_user, bound, worst_case=bound, minimum=bound)
        with self.meter.open(principal, estimate, on_admitted, seconds=self._chat_seconds) as call:
            embedding = self._asked(call, lambda server: server.embed(
                model=call.model, inputs=task.inputs, dimensions=task.dimensions, request_id=request_id,
                timeout=call.seconds_left()))
            prompt_tokens = bound if embedding.prompt_tokens is None else embedding.prompt_tokens
            call.settle(Usage(embedding.model, prompt_tokens, 0))
            return EmbeddingResult(call.id, embedding.model, embedding.vectors, prompt_tokens)

    def prompt_bound(self, task: ChatTask) -> int:
        """The tokens a chat's prompt is held as: an upper bound of what the model will count."""
        return prompt_tokens_upper_bound(task.messages, extra=task.prompt_extra(),
                                         count=self.tokenizers.count_for(task.model))

    def _asked(self, call: MeteredCall, ask: Callable[[ModelServer], T]) -> T:
        """What `ask` gets of the call's server; if that server fails before answering, of the
        next one the call moves to."""
        while True:
            assert call.placement is not None, "a call is asked of the server it sits on"
            try:
                return ask(self.servers[call.placement.server])
            except InferGateError as error:
                if not call.fail_over(error):
                    raise

    def _asked_to_think(self, call: MeteredCall, plan: _Plan,
                        ask: Callable[[ModelServer, bool], T]) -> tuple[T, tuple[str, ...]]:
        """What `ask` gets (as `_asked`), thinking if the task asks and the model can; and what
        the request asked that was not applied, thinking included when the model could not."""
        ignored = plan.task.ignored

        def thinking(server: ModelServer) -> T:
            nonlocal ignored
            ignored = plan.task.ignored  # as this server answers: another may have been asked before it
            where = (call.placement.server if call.placement else "", call.model)
            if plan.task.think and where not in self._unthinking:
                try:
                    return ask(server, True)
                except ThinkingUnsupported:  # nothing was generated: asked again, on the same hold
                    self._unthinking.add(where)
            if plan.task.think:
                ignored = (*plan.task.ignored, "thinking")
            return ask(server, False)

        return self._asked(call, thinking), ignored

    def _plan(self, principal: Principal, task: ChatTask) -> _Plan:
        prompt_bound = self.prompt_bound(task)
        size = sum(len(message.content.encode()) for message in task.messages)
        ceiling = self._fits_one_request(principal, prompt_bound, f"This prompt is {size} bytes of UTF-8 in "
                                         f"{len(task.messages)} message(s)", answer=1, model=task.model)
        max_tokens = min(task.max_tokens or DEFAULT_MAX_TOKENS, principal.plan.max_output_tokens, ceiling - prompt_bound)
        return _Plan(task, prompt_bound, max_tokens)

    def _fits_one_request(self, principal: Principal, bound: int, what: str, *, answer: int = 0,
                          model: str | None = None) -> int:
        """The most one request of the principal's may cost, the lesser of its tokens per minute
        and its monthly quota; PromptTooLarge, opening with `what`, if a prompt of `bound` tokens
        and an answer of `answer` do not fit in it."""
        ceiling = min(principal.quota_for(period_of(self.meter.clock())), principal.plan.rate_limit_tpm)
        if bound + answer > ceiling:
            counted = ("counted by the model's tokenizer" if self.tokenizers.count_for(model) is not utf8_bytes
                       else "a token covers at least one byte")
            raise PromptTooLarge(
                f"{what}, so it may take up to {bound} tokens ({counted}; each message "
                f"or input adds {TEMPLATE_TOKENS_PER_MESSAGE} and each request {TEMPLATE_TOKENS_PER_REQUEST}). Your "
                f"plan allows {ceiling} tokens per request: the lesser of its tokens per minute and its monthly quota."
            )
        return ceiling

    @staticmethod
    def _settled(call: MeteredCall, plan: _Plan, completion: Completion) -> ChatResult:
        """The answer with the calls the task asked for, charged; an answer cut off raises
        AnswerCutOff once it is charged."""
        completion = _with_calls_asked_for(completion, plan.task)
        usage = Usage(completion.model, completion.prompt_tokens, completion.completion_tokens)
        if completion.cut is not None:
            charge = call.cut(usage, completion.cut)
            raise AnswerCutOff(completion.cut, charged=charge.tokens)
        charge = call.settle(usage)
        return ChatResult(id=call.id, model=completion.model, content=completion.content,
                          prompt_tokens=charge.outcome.prompt_tokens, completion_tokens=charge.outcome.completion_tokens,
                          done_reason=completion.done_reason, created=charge.outcome.at,
                          tool_calls=completion.tool_calls, thinking=completion.thinking, ignored=plan.ignored,
                          thinking_tokens=sum(isinstance(piece, Thought) for piece in completion.pieces))


class ChatStream:
    """A chat's answer as the model produces it: iterating gives its pieces of text, and of its
    thoughts first when it thinks (no text for a forced tool call, whose answer is the call).
    Once they end, `result` is the answer, settled; an answer cut off raises AnswerCutOff
    instead, once it is charged. `close()`, when the reader is gone, stops the model server
    and charges what it generated. `ignored`: what the request asked that is not applied."""

    def __init__(self, call: MeteredCall, answer: AnswerStream, pieces: Iterator[Piece], *, show: bool,
                 created: datetime, ignored: tuple[str, ...], finish: Callable[[Completion], ChatResult],
                 watch: Watch | None = None) -> None:
        self.id, self.model, self.created, self.ignored = call.id, call.model, created, ignored
        self.result: ChatResult | None = None
        self._call, self._answer, self._pieces, self._show, self._finish = call, answer, pieces, show, finish
        self._watch = watch
        self._received: list[Piece] = []

    def __iter__(self) -> Iterator[Piece]:
        try:
            for piece in self._pieces:
                self._received.append(piece)
                self._still_answered()
                if self._show:  # a forced call's pieces are its arguments, given whole
                    yield piece
            assert self._answer.completion is not None, "an answer that ended has its completion"
            self.result = self._finish(self._answer.completion)
        except GeneratorExit:
            raise  # the reader left: close() charges what was generated
        except BaseException as error:
            self._call.close(error)
            raise
        self._call.close()

    def _still_answered(self) -> None:
        """AnswerCutOff, once what was generated is charged, if the caller may no longer be answered."""
        withdrawn = self._watch() if self._watch is not None else None
        if withdrawn is not None:
            raise AnswerCutOff(withdrawn, charged=self._stopped(withdrawn))

    def close(self) -> None:
        """Ends the stream: if the answer has not ended, the model server stops and what it
        generated is charged, as client_closed."""
        if not self._call.ended:
            self._stopped(READER_GONE)
        self._call.close()

    def _stopped(self, why: CutOff) -> int:
        """Stops the model server mid-answer and charges what it generated, for `why`: the tokens charged."""
        self._answer.close()
        cut = Completion.partial(self.model, self._received, why, prompt_tokens=self._answer.prompt_tokens)
        return self._call.cut(Usage(cut.model, cut.prompt_tokens, cut.completion_tokens), why).tokens


def _question(call: MeteredCall, plan: _Plan) -> dict[str, Any]:
    """What the model server is asked: the task, for no more tokens than were held."""
    task = plan.task
    return dict(model=call.model, messages=task.messages, max_tokens=call.reservation.tokens - plan.prompt_bound,
                request_id=call.request_id, options=task.options, tools=task.tools.offered, answer_format=task.format,
                suffix=task.suffix)


def _chained(first: Piece | None, rest: Iterator[Piece]) -> Iterator[Piece]:
    if first is not None:
        yield first
    yield from rest


def _with_calls_asked_for(completion: Completion, task: ChatTask) -> Completion:
    """The completion with the tool calls the task asked for: the forced call its constrained
    answer makes, or at most one call when parallel calls are not wanted."""
    if completion.cut is not None:
        return completion
    if task.tools.forced:
        try:
            return replace(completion, content="", tool_calls=(task.tools.forced_call(completion.content),))
        except UpstreamError as error:  # the model answered, not with the call it was held to
            return replace(completion, cut=CutOff(error.code, error.message, server_unwell=error.server_unwell))
    if task.one_tool_call and len(completion.tool_calls) > 1:
        return replace(completion, tool_calls=completion.tool_calls[:1])
    return completion
