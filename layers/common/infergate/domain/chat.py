"""A chat request from admission to charge.

  admit (Redis: request total, breaker, requests/min per key, tokens/min per user)
                                                          503 at once while the breaker is open
  → which model (OLLAMA_MODELS, the server's list)       400 before any token is reserved
  → reserve the most it can cost, capped to what remains (MongoDB, one guarded update)
  → ask the model for at most what was reserved
  → settle to the real counts, or release the reservation on failure (MongoDB, one guarded update)
  → conclude (Redis: the real token count, the breaker hears how the model server did).

A streamed chat (`stream`) takes the same steps, handing on each piece of
the answer as the model produces it; it is settled when the answer ends.
A reader that goes away mid-answer closes the stream: the model call is
closed (Ollama stops generating) and what was generated is charged, with
the status client_closed.

An answer cut off after tokens were generated (the deadline, a stall, a
broken stream) is settled, not released: the user is charged what the
model generated (Ollama's count if it sent one, else the pieces received,
with the prompt's reserved bound), and then gets the error. A failure
before any token costs nothing.

A reservation that is neither settled nor released (the function crashed or
timed out) expires by itself after its time to live, so no failure can hold
a user's quota for longer than that, and none is ever charged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from infergate.clock import utc_now
from infergate.domain import keys
from infergate.domain.admission import Admission, AdmissionControl
from infergate.domain.messages import Message, ToolCall
from infergate.domain.models import ModelPolicy
from infergate.domain.periods import period_end, period_of
from infergate.domain.ports import ChatModel, Completion, RequestOutcome, Reservation, UsageLedger
from infergate.domain.principal import Principal
from infergate.domain.tokens import (
    DEFAULT_MAX_TOKENS,
    TEMPLATE_TOKENS_PER_MESSAGE,
    TEMPLATE_TOKENS_PER_REQUEST,
    embedding_tokens_upper_bound,
    prompt_tokens_upper_bound,
)
from infergate.domain.tools import ToolUse
from infergate.errors import (
    ClientClosed,
    InferGateError,
    ModelNotFound,
    PromptTooLarge,
    QuotaExceeded,
    QuotaHeldInFlight,
    ServiceUnavailable,
    UpstreamError,
)
from infergate.observability import count, logger, note

T = TypeVar("T")
R = TypeVar("R")

# Comfortably longer than a buffered chat can run (API Gateway stops waiting at 29 s), so a
# live request always finds its reservation when it settles; streams get longer (bootstrap).
RESERVATION_TTL = timedelta(minutes=2)
# When the quota is held by requests in flight, retry after this: most finish within it.
HELD_RETRY_SECONDS = 2


@dataclass(frozen=True)
class ChatTask:
    """One chat as either API asks for it."""

    messages: list[Message]
    model: str | None = None
    max_tokens: int | None = None
    options: dict = field(default_factory=dict)  # passed to Ollama: temperature, top_p, seed, stop, penalties
    tools: ToolUse = field(default_factory=ToolUse)
    answer_format: str | Mapping[str, Any] | None = None  # "json" or a JSON schema
    one_tool_call: bool = False  # at most one call in the answer (no parallel calls)
    end_user: str | None = None  # who, behind a shared key, asked: recorded on the request log

    @property
    def format(self) -> str | Mapping[str, Any] | None:
        """What the model's answer must conform to: a forced call's arguments, or the answer format."""
        return self.tools.answer_format or self.answer_format

    def prompt_extra(self) -> str:
        """What the model reads besides the messages: the tools offered, the answer's schema."""
        return "".join(tool.prompt_text() for tool in self.tools.offered) + (
            json.dumps(self.format) if self.format is not None else "")


@dataclass(frozen=True)
class ChatResult:
    id: str
    model: str
    content: str
    pieces: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    done_reason: str | None
    created: datetime
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class _Started:
    """A streamed chat, reserved and asked: what its answer will be called."""

    id: str
    model: str
    created: datetime


class ChatStream:
    """A chat's answer as the model produces it: iterating gives its pieces of content (none
    for a forced tool call, whose answer is the call). Once they end, `result` is the answer,
    settled; an answer cut off raises its failure instead, after being charged. `close()`,
    when the reader is gone, stops the model and charges what it generated."""

    def __init__(self, started: _Started, first: str | ChatResult,
                 events: Generator[str | ChatResult | _Started, None, None]) -> None:
        self.id, self.model, self.created = started.id, started.model, started.created
        self._first: str | ChatResult | None = first
        self._events = events
        self.result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        while True:
            event = self._next()
            if isinstance(event, ChatResult):
                self.result = event
                next(self._events, None)  # lets the chat conclude its admission
                return
            yield event

    def _next(self) -> str | ChatResult:
        if self._first is not None:
            event, self._first = self._first, None
            return event
        return next(self._events)  # type: ignore[return-value]

    def close(self) -> None:
        self._events.close()


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
class _Request:
    """A metered request before it is admitted: what it may cost at most, and at least."""

    request_id: str
    model: str | None
    end_user: str | None
    worst_case: int
    minimum: int


@dataclass(frozen=True)
class _Plan:
    """What one request may cost before anything is reserved."""

    task: ChatTask
    prompt_bound: int
    max_tokens: int

    @property
    def worst_case(self) -> int:
        return self.prompt_bound + self.max_tokens

    def request(self, request_id: str) -> _Request:
        # At least the prompt and one token of answer must fit in what is reserved.
        return _Request(request_id, self.task.model, self.task.end_user, self.worst_case, self.prompt_bound + 1)


@dataclass
class _Call:
    """One reserved call to the model: what the log and the conclusion need to know of it."""

    principal: Principal
    request_id: str
    model: str
    reservation: Reservation
    end_user: str | None = None
    started: float = field(default_factory=time.monotonic)
    tokens: int = 0  # what the request really used, once known
    model_healthy: bool | None = None  # how the model server did; None if it was not asked


@dataclass
class ChatService:
    admission: AdmissionControl
    ledger: UsageLedger
    model: ChatModel
    models: ModelPolicy
    clock: Callable[[], datetime] = utc_now
    reservation_ttl: timedelta = RESERVATION_TTL  # longer than the longest chat

    def chat(
        self, principal: Principal, task: ChatTask, *, request_id: str,
        on_admitted: Callable[[Admission], None] = lambda admission: None,
    ) -> ChatResult:
        plan = self._plan(principal, task)

        def answer(call: _Call) -> ChatResult:
            return self._settled(call, plan, self._ask(call, plan))

        return self._metered(principal, plan.request(request_id), answer, on_admitted)

    def stream(
        self, principal: Principal, task: ChatTask, *, request_id: str,
        on_admitted: Callable[[Admission], None] = lambda admission: None, timeout: float | None = None,
    ) -> ChatStream:
        """The chat, streamed: admitted, reserved and asked before this returns, so that a
        failure before the answer starts is raised here, as for `chat`. `timeout`: the most
        seconds the answer may take, when the caller's own limit is shorter than the model's."""
        plan = self._plan(principal, task)
        events = self._streaming(principal, plan, request_id, on_admitted, timeout)
        started = next(events)
        return ChatStream(started, next(events), events)  # type: ignore[arg-type]

    def _streaming(
        self, principal: Principal, plan: _Plan, request_id: str, on_admitted: Callable[[Admission], None],
        timeout: float | None,
    ) -> Generator[str | ChatResult | _Started, None, None]:
        with self._metering(principal, plan.request(request_id), on_admitted) as call:
            yield _Started(call.reservation.reservation_id, call.model, self.clock())
            answer = self.model.stream(**self._question(call, plan), timeout=timeout)
            received: list[str] = []
            try:
                event = self._asking(call, lambda: next(answer))
                while isinstance(event, str):
                    received.append(event)
                    if not plan.task.tools.forced:  # a forced call's pieces are its arguments, given whole
                        yield event
                    event = next(answer)
            except GeneratorExit:
                answer.close()
                call.model_healthy = True
                closed = ClientClosed("The client closed the connection before the answer ended.")
                self._settle(call, plan, Completion.cut(call.model, received, closed))
                count("StreamsClosedByClient")
                return
            yield self._settled(call, plan, self._answered(call, plan, event))

    def embed(
        self, principal: Principal, task: EmbeddingTask, *, request_id: str,
        on_admitted: Callable[[Admission], None] = lambda admission: None,
    ) -> EmbeddingResult:
        """Embeddings of the task's inputs, metered as prompt tokens against the same quota and limits."""
        bound = embedding_tokens_upper_bound(task.inputs)
        self._fits_one_request(principal, bound, f"These {len(task.inputs)} input(s) are "
                               f"{sum(len(text.encode()) for text in task.inputs)} bytes of UTF-8")

        def embedded(call: _Call) -> EmbeddingResult:
            embedding = self._asking(call, lambda: self.model.embed(
                model=call.model, inputs=task.inputs, dimensions=task.dimensions, request_id=request_id))
            call.model_healthy = True
            prompt_tokens = bound if embedding.prompt_tokens is None else embedding.prompt_tokens
            charged = self._charge(call, self._outcome(call, embedding.model, "ok", prompt_tokens=prompt_tokens))
            call.tokens = prompt_tokens
            count("TokensCharged", charged)
            return EmbeddingResult(call.reservation.reservation_id, embedding.model, embedding.vectors, prompt_tokens)

        return self._metered(principal, _Request(request_id, task.model, task.end_user, bound, bound), embedded,
                             on_admitted)

    def _metered(self, principal: Principal, request: _Request, work: Callable[[_Call], R],
                 on_admitted: Callable[[Admission], None]) -> R:
        """`work` with the request's reserved call (see _metering)."""
        with self._metering(principal, request, on_admitted) as call:
            return work(call)

    @contextmanager
    def _metering(self, principal: Principal, request: _Request,
                  on_admitted: Callable[[Admission], None]) -> Iterator[_Call]:
        """Admit the request, resolve its model and reserve its worst case: the reserved call;
        whatever happens with it, conclude the admission with what the call used."""
        admission = self.admission.admit(principal, tokens=request.worst_case, guard_model=True)
        on_admitted(admission)
        call = None
        try:
            model = self.models.resolve(request.model)
            reservation = self._reserve(principal, request.worst_case, minimum=request.minimum)
            call = _Call(principal, request.request_id, model, reservation, end_user=request.end_user)
            yield call
        finally:
            # Tokens/min counts what the request used: nothing if no token was generated.
            self.admission.conclude(admission, tokens=call.tokens if call else 0,
                                    model_healthy=call.model_healthy if call else None)

    def _plan(self, principal: Principal, task: ChatTask) -> _Plan:
        prompt_bound = prompt_tokens_upper_bound(task.messages, extra=task.prompt_extra())
        size = sum(len(message.content.encode()) for message in task.messages)
        ceiling = self._fits_one_request(principal, prompt_bound, f"This prompt is {size} bytes of UTF-8 in "
                                         f"{len(task.messages)} message(s)", answer=1)
        max_tokens = min(task.max_tokens or DEFAULT_MAX_TOKENS, principal.max_output_tokens, ceiling - prompt_bound)
        return _Plan(task, prompt_bound, max_tokens)

    def _fits_one_request(self, principal: Principal, bound: int, what: str, *, answer: int = 0) -> int:
        """The most one request of the principal's may cost, the lesser of its tokens per minute
        and its monthly quota; PromptTooLarge, opening with `what`, if a prompt of `bound` tokens
        and an answer of `answer` do not fit in it."""
        ceiling = min(principal.quota_for(period_of(self.clock())), principal.rate_limit_tpm)
        if bound + answer > ceiling:
            raise PromptTooLarge(
                f"{what}, so it may take up to {bound} tokens (a token covers at least one byte; each message "
                f"or input adds {TEMPLATE_TOKENS_PER_MESSAGE} and each request {TEMPLATE_TOKENS_PER_REQUEST}). Your "
                f"plan allows {ceiling} tokens per request: the lesser of its tokens per minute and its monthly quota."
            )
        return ceiling

    def _reserve(self, principal: Principal, worst_case: int, *, minimum: int) -> Reservation:
        """Hold the request's worst case, capped to what remains of the quota but not below
        `minimum`; else QuotaHeldInFlight if the user's requests in flight hold what this one
        needs, or QuotaExceeded if it is spent."""
        now = self.clock()
        wanted = Reservation(keys.new_id("chat"), principal.user_id, period_of(now), worst_case,
                             now + self.reservation_ttl)
        quota = principal.quota_for(wanted.period)
        reservation = self.ledger.reserve(wanted, minimum=minimum, quota=quota, now=now)
        if reservation is not None:
            return reservation
        spent = self.ledger.usage(principal.user_id, wanted.period, now=now).tokens_used
        if quota - spent >= minimum:
            count("QuotaHeldInFlight")
            raise QuotaHeldInFlight(
                f"Your requests in flight hold what remains of your monthly quota ({quota - spent} of {quota} "
                f"tokens); it comes back as they finish. Retry in {HELD_RETRY_SECONDS} s.",
                retry_after=HELD_RETRY_SECONDS)
        count("QuotaExceeded")
        resets_in = max(1, int((period_end(wanted.period) - now).total_seconds()))
        raise QuotaExceeded(
            f"Your monthly quota of {quota} tokens is used up, or too little of it remains for this prompt. "
            f"It resets at the start of next month, in {resets_in} s (see GET /v1/usage).", retry_after=resets_in)

    def _ask(self, call: _Call, plan: _Plan) -> Completion:
        """The model's answer, asking for no more than was reserved. A failure before any token
        releases the reservation and is raised; an answer cut off, or a forced call the answer
        does not make, comes back with its failure, to be charged what it generated."""
        return self._answered(call, plan, self._asking(call, lambda: self.model.chat(**self._question(call, plan))))

    @staticmethod
    def _question(call: _Call, plan: _Plan) -> dict[str, Any]:
        """What the model is asked: the task, for no more tokens than were reserved."""
        return dict(model=call.model, messages=plan.task.messages, max_tokens=call.reservation.tokens - plan.prompt_bound,
                    request_id=call.request_id, options=plan.task.options, tools=plan.task.tools.offered,
                    answer_format=plan.task.format)

    def _answered(self, call: _Call, plan: _Plan, completion: Completion) -> Completion:
        """The completion with the calls the task asked for, and how the model server did."""
        try:
            completion = _with_calls_asked_for(completion, plan.task)
        except UpstreamError as error:  # the model answered, not with the call it was held to
            completion = replace(completion, failure=error)
        call.model_healthy = not _blames_the_model_server(completion.failure)
        if completion.failure is not None:
            count("UpstreamFailures")
        return completion

    def _asking(self, call: _Call, ask: Callable[[], T]) -> T:
        """`ask()` of the model; if it fails, the reservation is released (the request costs
        nothing), the breaker will hear whether the failure blames the server, and it is raised."""
        try:
            return ask()
        except BaseException as error:
            code = error.code if isinstance(error, InferGateError) else "internal_error"
            call.model_healthy = not _blames_the_model_server(error)
            self._release(call, code, getattr(error, "message", type(error).__name__))
            if isinstance(error, ModelNotFound):
                logger.warning("the model server does not have the model", extra={"model": call.model})
            elif isinstance(error, UpstreamError):
                count("UpstreamFailures")
            raise

    def _settled(self, call: _Call, plan: _Plan, completion: Completion) -> ChatResult:
        """The answer, charged; an answer cut off raises its failure once it is charged."""
        result = self._settle(call, plan, completion)
        if completion.failure is not None:
            raise completion.failure
        return result

    def _settle(self, call: _Call, plan: _Plan, completion: Completion) -> ChatResult:
        """Charge the counts the model reported (never past the quota) and log the request."""
        prompt_tokens = completion.prompt_tokens
        if prompt_tokens is None:
            # Ollama omits prompt_eval_count when it serves the prompt from its cache, and sends it
            # only at the end of an answer, so a cut one never has it. Absence is not "free":
            # charge the bound that was reserved for the prompt.
            if completion.failure is None:
                logger.warning("model did not report prompt tokens; charging the bound", extra={"bound": plan.prompt_bound})
            prompt_tokens = plan.prompt_bound
        failure = completion.failure
        outcome = self._outcome(call, completion.model, failure.code if failure else "ok", prompt_tokens=prompt_tokens,
                                completion_tokens=completion.completion_tokens, detail=failure.message if failure else None)
        charged = self._charge(call, outcome)
        call.tokens = outcome.total_tokens
        if failure is not None:
            failure.message += f" The {charged} tokens used before it ended were charged."
        if charged < outcome.total_tokens:
            logger.error("model used more than was reserved; the excess is logged unbilled",
                         extra={"reserved": call.reservation.tokens, "used": outcome.total_tokens, "charged": charged})
        count("TokensCharged", charged)
        return ChatResult(
            id=call.reservation.reservation_id,
            model=completion.model,
            content=completion.content,
            pieces=completion.pieces or (completion.content,),
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            done_reason=completion.done_reason,
            created=outcome.at,
            tool_calls=completion.tool_calls,
        )

    def _charge(self, call: _Call, outcome: RequestOutcome) -> int:
        """Settle the reservation to `outcome`: the tokens charged.

        If the ledger does not answer in time, whether the charge was recorded is unknown:
        a write sent to a hung MongoDB lands when it resumes. The answer exists and is
        given, as charged, so that no caller is charged for an answer withheld; should the
        write never land, the hold expires and the request goes unbilled, which the log
        and the ChargesUnconfirmed metric say."""
        try:
            return self.ledger.settle(call.reservation, outcome, quota=call.principal.quota_for(call.reservation.period))
        except ServiceUnavailable:
            logger.error("charge not confirmed: the ledger did not answer", extra={
                "reservation_id": call.reservation.reservation_id, "tokens": outcome.total_tokens})
            count("ChargesUnconfirmed")
            return min(outcome.total_tokens, call.reservation.tokens)

    def _release(self, call: _Call, code: str, detail: str) -> None:
        try:
            self.ledger.release(call.reservation, self._outcome(call, call.model, code, detail=detail))
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            # Nothing was charged; the reservation expires by itself.
            logger.exception("could not release a reservation", extra={"reservation_id": call.reservation.reservation_id})

    def _outcome(
        self, call: _Call, model: str, status: str,
        *, prompt_tokens: int = 0, completion_tokens: int = 0, detail: str | None = None,
    ) -> RequestOutcome:
        """How the request ended, for its log line in the ledger, and for its access line."""
        latency_ms = int((time.monotonic() - call.started) * 1000)  # the model's part of the request
        note(model=model, outcome=status, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
             end_user=call.end_user, upstream_ms=latency_ms)
        return RequestOutcome(
            request_id=call.request_id,
            user_id=call.principal.user_id,
            key_id=call.principal.key_id,
            model=model,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            at=self.clock(),
            detail=detail,
            end_user=call.end_user,
        )


def _with_calls_asked_for(completion: Completion, task: ChatTask) -> Completion:
    """The completion with the tool calls the task asked for: the forced call its constrained
    answer makes, or at most one call when parallel calls are not wanted."""
    if completion.failure is not None:
        return completion
    if task.tools.forced:
        return replace(completion, content="", tool_calls=(task.tools.forced_call(completion.content),))
    if task.one_tool_call and len(completion.tool_calls) > 1:
        return replace(completion, tool_calls=completion.tool_calls[:1])
    return completion


def _blames_the_model_server(failure: BaseException | None) -> bool:
    """Whether a failure is a sign that the model server is unwell, for its circuit breaker."""
    return isinstance(failure, UpstreamError) and failure.server_unwell
