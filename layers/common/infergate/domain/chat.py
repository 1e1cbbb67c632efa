"""A chat request from admission to charge.

  admit (Redis: requests/min per key, tokens/min per user)
  → which model (OLLAMA_MODELS, the server's list)       400 before any token is reserved
  → the model server's circuit breaker                   503 at once while it is open
  → reserve the most it can cost, capped to what remains (MongoDB)
  → ask the model for at most what was reserved
  → settle to the real counts, or release the reservation on failure.

A reservation that is neither settled nor released (the function crashed or
timed out) expires by itself after RESERVATION_TTL, so no failure can hold
a user's quota for longer than that, and none is ever charged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aws_lambda_powertools.metrics import MetricUnit

from infergate.clock import utc_now
from infergate.domain import keys
from infergate.domain.models import ModelPolicy
from infergate.domain.periods import period_of
from infergate.domain.ports import BreakerPass, ChatModel, CircuitBreaker, RequestOutcome, Reservation, UsageLedger
from infergate.domain.rate_limits import Admission, RateLimits
from infergate.domain.tokens import DEFAULT_MAX_TOKENS, prompt_tokens_upper_bound
from infergate.errors import InferGateError, ModelNotFound, PromptTooLarge, QuotaExceeded
from infergate.models.chat import ChatMessage, TokenUsage
from infergate.models.principal import Principal
from infergate.observability import logger, metrics

# Comfortably longer than any function can run (API Gateway stops waiting at 29 s),
# so a live request always finds its reservation when it settles.
RESERVATION_TTL = timedelta(minutes=2)

# Failures that say the model server is unwell (as opposed to the request being wrong).
_BACKEND_FAILURES = ("upstream_error", "upstream_timeout", "service_unavailable")


@dataclass(frozen=True)
class ChatTask:
    """One chat as either API asks for it."""

    messages: list[ChatMessage]
    model: str | None = None
    max_tokens: int | None = None
    options: dict = field(default_factory=dict)  # passed to Ollama: temperature, top_p, seed, stop


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

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                          total_tokens=self.total_tokens)


@dataclass(frozen=True)
class _Plan:
    """What one request may cost before anything is reserved."""

    messages: list[ChatMessage]
    prompt_bound: int
    max_tokens: int
    options: dict

    @property
    def worst_case(self) -> int:
        return self.prompt_bound + self.max_tokens


@dataclass
class ChatService:
    limits: RateLimits
    ledger: UsageLedger
    model: ChatModel
    models: ModelPolicy
    breaker: CircuitBreaker
    clock: Callable[[], datetime] = utc_now

    def chat(
        self, principal: Principal, task: ChatTask, *, request_id: str,
        on_admitted: Callable[[Admission], None] = lambda admission: None,
    ) -> ChatResult:
        plan = self._plan(principal, task)
        admission = self.limits.admit(principal, tokens=plan.worst_case)
        on_admitted(admission)
        try:
            model = self.models.resolve(task.model)
            passage = self.breaker.before_call()
            return self._reserved_chat(principal, plan, model, admission, passage, request_id)
        except BaseException:
            self.limits.settle_tokens(admission, 0)  # a failed request costs no tokens/min either
            raise

    def _plan(self, principal: Principal, task: ChatTask) -> _Plan:
        prompt_bound = prompt_tokens_upper_bound(task.messages)
        ceiling = min(principal.monthly_token_quota, principal.rate_limit_tpm)
        if prompt_bound + 1 > ceiling:
            raise PromptTooLarge(
                f"This prompt may take up to {prompt_bound} tokens; your plan allows {ceiling} per request."
            )
        max_tokens = min(task.max_tokens or DEFAULT_MAX_TOKENS, principal.max_output_tokens, ceiling - prompt_bound)
        return _Plan(task.messages, prompt_bound, max_tokens, task.options)

    def _reserved_chat(
        self, principal: Principal, plan: _Plan, model: str, admission: Admission, passage: BreakerPass, request_id: str,
    ) -> ChatResult:
        now = self.clock()
        wanted = Reservation(
            reservation_id=keys.new_id("chat"),
            user_id=principal.user_id,
            period=period_of(now),
            tokens=plan.worst_case,
            expires_at=now + RESERVATION_TTL,
        )
        reservation = self.ledger.reserve(wanted, minimum=plan.prompt_bound + 1, quota=principal.monthly_token_quota, now=now)
        if reservation is None:
            self.breaker.abandon(passage)
            metrics.add_metric(name="QuotaExceeded", unit=MetricUnit.Count, value=1)
            raise QuotaExceeded(
                f"Your monthly quota of {principal.monthly_token_quota} tokens is used up, or too little of it "
                "remains for this prompt. It resets at the start of next month (see GET /v1/usage)."
            )

        started = time.monotonic()
        # Ask for no more than was reserved: what remains of the quota caps max_tokens.
        max_tokens = reservation.tokens - plan.prompt_bound
        try:
            completion = self.model.chat(
                model=model, messages=plan.messages, max_tokens=max_tokens, request_id=request_id, options=plan.options,
            )
        except BaseException as error:
            code = error.code if isinstance(error, InferGateError) else "internal_error"
            self.breaker.after_call(passage, ok=code not in _BACKEND_FAILURES)
            if isinstance(error, InferGateError):
                metrics.add_metric(name="UpstreamFailures", unit=MetricUnit.Count, value=1)
            self._release(reservation, self._outcome(principal, request_id, model, code, started,
                                                     detail=getattr(error, "message", type(error).__name__)))
            if isinstance(error, ModelNotFound):
                logger.warning("the model server does not have the model", extra={"model": model})
            raise
        self.breaker.after_call(passage, ok=True)

        prompt_tokens = completion.prompt_tokens
        if prompt_tokens is None:
            # Ollama omits prompt_eval_count when it serves the prompt from its cache.
            # Absence is not "free": charge the bound that was reserved for the prompt.
            logger.warning("model did not report prompt tokens; charging the bound", extra={"bound": plan.prompt_bound})
            prompt_tokens = plan.prompt_bound
        outcome = self._outcome(
            principal, request_id, completion.model, "ok", started,
            prompt_tokens=prompt_tokens, completion_tokens=completion.completion_tokens,
        )
        charged = self.ledger.settle(reservation, outcome, quota=principal.monthly_token_quota)
        if charged < outcome.total_tokens:
            logger.error("model used more than was reserved; the excess is logged unbilled",
                         extra={"reserved": reservation.tokens, "used": outcome.total_tokens, "charged": charged})
        self.limits.settle_tokens(admission, outcome.total_tokens)
        metrics.add_metric(name="TokensCharged", unit=MetricUnit.Count, value=charged)
        return ChatResult(
            id=reservation.reservation_id,
            model=completion.model,
            content=completion.content,
            pieces=completion.pieces or (completion.content,),
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            done_reason=completion.done_reason,
            created=outcome.at,
        )

    def _release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        try:
            self.ledger.release(reservation, outcome)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            # Nothing was charged; the reservation expires by itself.
            logger.exception("could not release a reservation", extra={"reservation_id": reservation.reservation_id})

    def _outcome(
        self, principal: Principal, request_id: str, model: str, status: str, started: float,
        *, prompt_tokens: int = 0, completion_tokens: int = 0, detail: str | None = None,
    ) -> RequestOutcome:
        return RequestOutcome(
            request_id=request_id,
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=model,
            status=status,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=int((time.monotonic() - started) * 1000),
            at=self.clock(),
            detail=detail,
        )
